/**
 * `airlock policy check|test|explain|diff|suggest` — tools for a policy repository's CI (docs/policy.md
 * "Policy tools").
 *
 * Exit codes: 0 ok; 1 findings (check: errors, or warnings with `--strict`), failing test cases, or
 * an invalid policy under check/test; 2 usage errors and input that cannot be used (a missing
 * directory, an unreadable or malformed audit file, an invalid policy given to explain/diff, a URL
 * that cannot be normalised).
 */
import { verdictOf } from '../policy/policy-tests.js';
import { registerPolicySyncCommand } from './policy-sync.js';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Command, type CommanderError, InvalidArgumentError, Option } from 'commander';
import { PolicyError, RequestValidationError } from '../errors.js';
import { requestFromUrl } from '../request/normalize.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { explainRequest, type ExplainReport } from '../policy/explain.js';
import {
  lintCredentials,
  type CredentialDeployment,
  type CredentialFinding,
} from '../policy/credentials-lint.js';
import { loadConfig } from '../config/load.js';
import { GATEWAY_CREDENTIALS_DIR } from '../config/schema.js';
import { lintDelegation, type DelegationFinding } from '../policy/delegation.js';
import { lintPolicy, type LintFinding } from '../policy/lint.js';
import { loadPolicyDir } from '../policy/load.js';
import {
  listPolicyTestFiles,
  parsePolicyTestFile,
  readPolicyTestFiles,
  runPolicyTestFiles,
  type PolicyTestFailure,
} from '../policy/policy-tests.js';
import {
  AuditLineError,
  parseAuditLines,
  replayCalls,
  type RecordedCall,
  type ReplayReport,
} from '../policy/replay.js';
import {
  parseObservedLines,
  suggestPolicy,
  type ObservedCall,
  type SuggestReport,
} from '../policy/suggest.js';
import { SAFE_METHODS } from '../policy/modes.js';
import type { PolicyDecision } from '../policy/types.js';
import { CliError } from './client.js';

/** Where command output goes (stdout/stderr by default; tests may capture it). */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

/** A problem located in a policy directory, printed `DIR/FILE[:LINE]: SEVERITY: MESSAGE`. */
interface Located {
  readonly location: string;
  readonly severity: 'error' | 'warning';
  readonly message: string;
  readonly id?: string;
}

function fromPolicyError(err: PolicyError): Located {
  const loc = err.location ?? '';
  const message =
    loc !== '' && err.message.startsWith(`${loc}: `) ? err.message.slice(loc.length + 2) : err.message;
  return { location: loc, severity: 'error', message };
}

function where(dir: string, location: string): string {
  return location === '' ? dir : path.join(dir, location);
}

function formatLocated(dir: string, f: Located): string {
  return `${where(dir, f.location)}: ${f.severity}: ${f.message}${f.id ? ` [${f.id}]` : ''}\n`;
}

/** @throws CliError (exit 2) when `dir` is not a readable directory. */
async function requireDir(dir: string, what = 'policy directory'): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (err) {
    throw new CliError(`cannot read ${what} ${dir}: ${(err as Error).message}`, 2);
  }
  if (!isDir) throw new CliError(`${what} ${dir} is not a directory`, 2);
}

/**
 * Loads a policy directory for explain/diff, where an invalid policy is unusable input.
 * @throws CliError (exit 2).
 */
async function loadOrExit(dir: string): Promise<CompiledPolicy> {
  await requireDir(dir);
  try {
    return await loadPolicyDir(dir);
  } catch (err) {
    if (err instanceof PolicyError) {
      throw new CliError(`invalid policy: ${formatLocated(dir, fromPolicyError(err)).trimEnd()}`, 2);
    }
    throw err;
  }
}

function verdict(d: PolicyDecision): 'allow' | 'deny' | 'ask' {
  return verdictOf(d);
}

function ruleOf(d: PolicyDecision): string {
  return d.rule === null ? 'no rule matched' : `rule ${d.rule}`;
}

// ---------------------------------------------------------------------------------------------------------
// check

/** Options of `airlock policy check`. */
export interface CheckOptions {
  /** Warnings fail the check too. */
  strict?: boolean;
  json?: boolean;
  /** An Airlock config file: its passthrough hosts and (Docker) credential mounts are checked too. */
  config?: string;
  /** Secrets the gateways may read (the chart's gateway.credentialSecrets). */
  secrets?: string[];
}

/**
 * What `--config` and `--secrets` say about the deployment (credentials-lint.ts).
 * @throws ConfigError for an invalid config file.
 */
export function credentialDeployment(opts: CheckOptions): CredentialDeployment {
  const d: { -readonly [K in keyof CredentialDeployment]: CredentialDeployment[K] } = {};
  if (opts.config !== undefined) {
    const cfg = loadConfig(opts.config);
    d.passthrough = cfg.gateway.tls.passthrough;
    if (cfg.runtime.kind === 'docker')
      d.docker = {
        fileRoot: cfg.gateway.credentialsDir !== undefined ? GATEWAY_CREDENTIALS_DIR : null,
        envNames: cfg.gateway.credentialEnv,
      };
  }
  if (opts.secrets !== undefined) d.secretNames = opts.secrets;
  return d;
}

/**
 * `airlock policy check DIR`: parse, validate (model.conf, policy.csv, tests/*.yaml) and lint.
 * @returns the exit code: 1 with any error (or any warning with `strict`), else 0.
 * @throws CliError (exit 2) when DIR is not a readable directory.
 */
export async function policyCheck(dir: string, opts: CheckOptions = {}, io: Output = stdio): Promise<number> {
  await requireDir(dir);
  const found: Located[] = [];
  let policy: CompiledPolicy | null = null;
  try {
    policy = await loadPolicyDir(dir);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    found.push(fromPolicyError(err));
  }
  let cases = 0;
  let files: string[] = [];
  try {
    files = await listPolicyTestFiles(dir);
    for (const f of await readPolicyTestFiles(dir)) {
      try {
        cases += parsePolicyTestFile(f.file, f.text).length;
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        found.push(fromPolicyError(err));
      }
    }
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    found.push(fromPolicyError(err));
  }
  const lints: Array<LintFinding | DelegationFinding | CredentialFinding> = policy
    ? [
        ...[...lintPolicy(policy), ...lintDelegation(policy)].sort((a, b) => a.line - b.line),
        ...lintCredentials(policy, credentialDeployment(opts)),
      ]
    : [];
  for (const l of lints) {
    found.push({ location: `${l.file}:${l.line}`, severity: l.severity, message: l.message, id: l.id });
  }
  const errors = found.filter((f) => f.severity === 'error').length;
  const warnings = found.length - errors;
  const failed = errors > 0 || (opts.strict === true && warnings > 0);
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          dir,
          ok: !failed,
          errors,
          warnings,
          version: policy?.version ?? null,
          findings: found.map((f) => ({
            file: f.location.replace(/:\d+$/, ''),
            line: /:(\d+)$/.exec(f.location) ? Number(/:(\d+)$/.exec(f.location)?.[1]) : null,
            severity: f.severity,
            id: f.id ?? 'invalid',
            message: f.message,
          })),
        },
        null,
        2,
      ) + '\n',
    );
    return failed ? 1 : 0;
  }
  for (const f of found) io.out(formatLocated(dir, f));
  const counts = `${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`;
  const what = policy
    ? `${policy.policyRules.length} rules, ${policy.roleLinks.length} role links, ${policy.roles.size} roles, ` +
      `${cases} test cases in ${files.length} files; version ${policy.version}`
    : 'policy not loaded';
  io.out(
    `${failed ? 'FAIL' : 'ok'}: ${dir}: ${counts} (${what})${failed && errors === 0 ? ' [--strict]' : ''}\n`,
  );
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// test

function formatFailure(dir: string, f: PolicyTestFailure): string {
  const c = f.case;
  const name = c.name ? ` "${c.name}"` : '';
  const req = requestFromUrl(c.url, c.method);
  return (
    `--- ${where(dir, `${f.file}:${f.line}`)} case ${f.index}${name}\n` +
    `- expected ${c.expect}\n` +
    `+ got      ${verdict(f.actual)}  role=${c.role} ${req.method} ${c.url}  (${ruleOf(f.actual)})\n`
  );
}

/**
 * `airlock policy test DIR`: load the policy and run `tests/*.yaml`.
 * @returns 0 when every case passes (or there are none), 1 on failures or an invalid policy/test file.
 * @throws CliError (exit 2) when DIR is not a readable directory.
 */
export async function policyTest(
  dir: string,
  opts: { json?: boolean } = {},
  io: Output = stdio,
): Promise<number> {
  await requireDir(dir);
  let policy: CompiledPolicy;
  let report;
  try {
    policy = await loadPolicyDir(dir);
    report = runPolicyTestFiles(policy, await readPolicyTestFiles(dir));
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const f = fromPolicyError(err);
    if (opts.json)
      io.out(JSON.stringify({ dir, ok: false, error: formatLocated(dir, f).trimEnd() }, null, 2) + '\n');
    else io.out(formatLocated(dir, f) + `FAIL: ${dir}: the policy or its tests cannot be loaded\n`);
    return 1;
  }
  const n = report.failures.length;
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          dir,
          ok: n === 0,
          version: policy.version,
          files: report.files,
          cases: report.cases,
          failures: report.failures.map((f) => ({
            file: f.file,
            line: f.line,
            index: f.index,
            name: f.case.name ?? null,
            role: f.case.role,
            method: f.case.method,
            url: f.case.url,
            expected: f.case.expect,
            actual: verdict(f.actual),
            reason: f.actual.reason,
            rule: f.actual.rule,
          })),
        },
        null,
        2,
      ) + '\n',
    );
    return n === 0 ? 0 : 1;
  }
  for (const f of report.failures) io.out(formatFailure(dir, f));
  if (report.cases === 0) {
    io.out(`ok: ${dir}: no test cases (add tests/*.yaml; docs/policy.md "Policy tests")\n`);
    return 0;
  }
  const files = `${report.files.length} file${report.files.length === 1 ? '' : 's'}`;
  io.out(
    n === 0
      ? `ok: ${dir}: ${report.cases} cases in ${files} passed (policy ${policy.version})\n`
      : `FAIL: ${dir}: ${n} of ${report.cases} cases in ${files} failed (policy ${policy.version})\n`,
  );
  return n === 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------------------
// explain

/** Options of `airlock policy explain`. */
export interface ExplainOptions {
  role: string;
  /** Also ask a real Casbin enforcer and compare (slow on large policies). */
  casbin?: boolean;
  json?: boolean;
}

function formatExplain(dir: string, url: string, r: ExplainReport): string {
  const req = r.request;
  const out: string[] = [];
  out.push(`decision: ${verdict(r.decision)} (${r.decision.reason})`);
  out.push(`request:  role=${req.role} ${req.method} ${req.host}${req.path}   (${url})`);
  out.push('roles (nearest first):');
  for (const s of r.chain) {
    out.push(
      s.via === null
        ? `  ${s.role}${r.knownRole ? '' : '   (not named by any rule or g line)'}`
        : `  ${s.role}   via ${s.path.join(' -> ')}  (${where(dir, `policy.csv:${s.line}`)})`,
    );
  }
  if (r.matched.length === 0) out.push('matching rules: none');
  else {
    out.push('matching rules (file order):');
    for (const m of r.matched) {
      const text = m.rule.text.replace(/^policy\.csv:\d+: /, '');
      out.push(`  ${where(dir, `policy.csv:${m.rule.line}`)}  ${text}${m.decides ? '   <- decides' : ''}`);
    }
  }
  if (r.nearMisses.length > 0 && r.decision.reason === 'no_match') {
    out.push('rules for this host that do not match (path or method):');
    for (const rule of r.nearMisses) {
      out.push(`  ${where(dir, `policy.csv:${rule.line}`)}  ${rule.text.replace(/^policy\.csv:\d+: /, '')}`);
    }
  }
  out.push(`why:      ${r.why}`);
  return out.join('\n') + '\n';
}

/**
 * `airlock policy explain DIR --role R METHOD URL`.
 * @returns 0, or 1 when `casbin` is set and Casbin disagrees (a bug: please report it).
 * @throws CliError (exit 2) for a missing/invalid policy or a URL/method that cannot be normalised.
 */
export async function policyExplain(
  dir: string,
  method: string,
  url: string,
  opts: ExplainOptions,
  io: Output = stdio,
): Promise<number> {
  const policy = await loadOrExit(dir);
  let n;
  try {
    n = requestFromUrl(url, method);
  } catch (err) {
    if (err instanceof RequestValidationError) throw new CliError(`${err.field}: ${err.message}`, 2);
    throw err;
  }
  // The gateway decides CONNECT with path "/" (a tunnel has no path); explain does the same.
  const reqPath = n.method === 'CONNECT' ? '/' : n.path;
  const report = explainRequest(policy, {
    role: opts.role,
    host: n.policyHost,
    path: reqPath,
    method: n.method,
  });
  // Complain mode (modes.yaml) changes enforcement, not the decision: say what the gateway would do.
  const mode = policy.complainRoles.has(opts.role) ? 'complain' : 'enforce';
  const denial = report.decision.reason === 'rule_deny' || report.decision.reason === 'no_match';
  const wouldDeny = mode === 'complain' && denial && SAFE_METHODS.has(n.method);
  let casbin: { allowed: boolean; rule: string | null; agrees: boolean } | null = null;
  if (opts.casbin) {
    const { newCasbinEnforcer } = await import('../policy/casbin.js');
    const e = await newCasbinEnforcer(policy.source.modelText, policy.source.policyText);
    const [allowed, ex] = e.enforceExSync(opts.role, n.policyHost, reqPath, n.method) as [boolean, string[]];
    const rule = ex.length > 0 ? ex.join(', ') : null;
    const ours = report.decision.rule?.replace(/^policy\.csv:\d+: p, /, '') ?? null;
    casbin = { allowed, rule, agrees: allowed === report.decision.allowed && rule === ours };
  }
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          dir,
          version: policy.version,
          url,
          request: report.request,
          decision: report.decision,
          roles: report.chain,
          matched: report.matched.map((m) => ({
            rule: m.rule.text,
            line: m.rule.line,
            role: m.rule.role,
            decides: m.decides,
          })),
          why: report.why,
          mode,
          wouldDeny,
          ...(casbin ? { casbin } : {}),
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    io.out(formatExplain(dir, url, report));
    if (mode === 'complain') {
      io.out(
        wouldDeny
          ? `complain: role ${opts.role} is in complain mode (modes.yaml): the gateway forwards this denied ` +
              `${n.method} and audits it would_deny (a creator's egress rules, a method override to an unsafe ` +
              'method, a tunnel relayed unopened or a WebSocket are still refused)\n'
          : denial
            ? `complain: role ${opts.role} is in complain mode (modes.yaml), but ${n.method} is not a safe method ` +
              '(GET, HEAD, OPTIONS): the gateway refuses this call\n'
            : `complain: role ${opts.role} is in complain mode (modes.yaml); this call is not denied\n`,
      );
    }
    if (casbin) {
      io.out(
        `casbin:   ${casbin.allowed ? 'allow' : 'deny'}${casbin.rule ? ` (p, ${casbin.rule})` : ''} — ` +
          `${casbin.agrees ? 'agrees' : 'DISAGREES with the compiled index (please report this)'}\n`,
      );
    }
  }
  return casbin && !casbin.agrees ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------
// diff

/** Options of `airlock policy diff`. */
export interface DiffOptions {
  /** Audit files (JSON lines), read in order. */
  audit: string[];
  json?: boolean;
  /** Print at most this many changed calls (text output). @default 100 */
  limit?: number;
}

function formatDiff(oldDir: string, newDir: string, r: ReplayReport, limit: number): string {
  const out: string[] = [];
  const skipped = r.skipped.noRole + r.skipped.badTarget;
  out.push(
    `replayed ${r.replayed} of ${r.events} recorded calls (${r.distinct} distinct)` +
      (skipped > 0
        ? `; skipped ${skipped}: ${r.skipped.noRole} without a role, ${r.skipped.badTarget} without a usable target`
        : ''),
  );
  if (r.changes.length === 0) {
    out.push(`no decision changes between ${oldDir} and ${newDir}`);
    return out.join('\n') + '\n';
  }
  out.push(
    `${r.changes.length} distinct call${r.changes.length === 1 ? '' : 's'} (${r.changedEvents} recorded ` +
      `event${r.changedEvents === 1 ? '' : 's'}) change decision from ${oldDir} to ${newDir}:`,
  );
  const width = String(Math.max(...r.changes.map((c) => c.count))).length;
  for (const c of r.changes.slice(0, limit)) {
    out.push(
      `  ${verdict(c.old)} -> ${verdict(c.new).padEnd(5)}  x${String(c.count).padEnd(width)}  ` +
        `role=${c.role} ${c.method} ${c.host}${c.path}`,
    );
    out.push(`      old: ${verdict(c.old)} (${ruleOf(c.old)})`);
    out.push(`      new: ${verdict(c.new)} (${ruleOf(c.new)})`);
  }
  if (r.changes.length > limit) out.push(`  ... and ${r.changes.length - limit} more (--limit, --json)`);
  return out.join('\n') + '\n';
}

/**
 * `airlock policy diff OLD NEW --audit FILE`: replay recorded calls through both policies.
 * @returns 0 (changes are information, not failures).
 * @throws CliError (exit 2) for an invalid/missing policy or an unreadable or malformed audit file.
 */
export async function policyDiff(
  oldDir: string,
  newDir: string,
  opts: DiffOptions,
  io: Output = stdio,
): Promise<number> {
  const [oldPolicy, newPolicy] = [await loadOrExit(oldDir), await loadOrExit(newDir)];
  const calls = await readAuditFiles<RecordedCall | null>(opts.audit, parseAuditLines);
  const report = replayCalls(oldPolicy, newPolicy, calls);
  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          old: { dir: oldDir, version: oldPolicy.version },
          new: { dir: newDir, version: newPolicy.version },
          ...report,
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    io.out(formatDiff(oldDir, newDir, report, opts.limit ?? 100));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// suggest

/** Options of `airlock policy suggest`. */
export interface SuggestOptions {
  /** Audit files (JSON lines), read in order. */
  audit: string[];
  role?: string;
  session?: string;
  /** ISO-8601 time, or a duration before now: `90s`, `15m`, `2h`, `7d`. */
  since?: string;
  json?: boolean;
  /** Print at most this many changed calls of the diff (text output). @default 100 */
  limit?: number;
}

/**
 * Parses `--since`: an ISO-8601 date/time or a duration before `now` (`90s`, `15m`, `2h`, `7d`).
 * @throws CliError (exit 2).
 */
export function parseSince(text: string, now: Date = new Date()): Date {
  const rel = /^([0-9]+)([smhd])$/.exec(text);
  if (rel) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(rel[1]) * unit);
  }
  const t = /^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(t)) {
    throw new CliError(`--since "${text}": expected an ISO-8601 time or a duration (90s, 15m, 2h, 7d)`, 2);
  }
  return new Date(t);
}

async function readAuditFiles<T>(files: readonly string[], parse: (text: string) => T[]): Promise<T[]> {
  const calls: T[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read audit file ${file}: ${(err as Error).message}`, 2);
    }
    try {
      for (const c of parse(text)) calls.push(c);
    } catch (err) {
      if (err instanceof AuditLineError) {
        throw new CliError(`${file}:${err.line}: ${err.message.replace(/^line \d+: /, '')}`, 2);
      }
      throw err;
    }
  }
  return calls;
}

function formatSuggest(dir: string, r: SuggestReport, limit: number): string {
  const out: string[] = [];
  const s = r.skipped;
  const skipped = s.noRole + s.badTarget + s.notPolicy + s.filtered + s.unrepresentable;
  const distinct = r.allowed.length + r.blocked.length + r.lines.reduce((n, l) => n + l.covers.length, 0);
  out.push(
    `learned from ${r.considered} of ${r.events} recorded calls (${distinct} distinct)` +
      (skipped > 0
        ? `; skipped ${skipped}: ${s.filtered} filtered out, ${s.noRole} without a role, ` +
          `${s.notPolicy} not decided by the policy, ${s.badTarget} without a usable target` +
          (s.unrepresentable > 0 ? `, ${s.unrepresentable} with paths policy.csv cannot spell` : '')
        : ''),
  );
  out.push(`already allowed: ${r.allowed.length} distinct call${r.allowed.length === 1 ? '' : 's'}`);
  if (r.blocked.length > 0) {
    out.push(`blocked by deny rules, nothing suggested (${r.blocked.length}):`);
    for (const o of r.blocked) {
      const q = o.request;
      out.push(
        `  role=${q.role} ${q.method} ${q.host}${q.path}  x${o.count}  denied by ${o.decision.rule ?? ''}`,
      );
    }
  }
  if (r.lines.length === 0) {
    out.push('nothing to suggest: no recorded call was denied for lack of a rule');
  } else {
    const file = path.join(dir, 'policy.csv');
    const first = (r.lines[0] as (typeof r.lines)[number]).line - 2;
    const added = r.addition.split('\n').slice(0, -1);
    out.push(`suggested ${r.lines.length} line${r.lines.length === 1 ? '' : 's'} for ${file}:`);
    out.push(`--- ${file}`);
    out.push(`+++ ${file} (proposed, version ${r.proposed.version})`);
    out.push(`@@ -${first - 1},0 +${first},${added.length} @@`);
    for (const l of added) out.push(l === '' ? '+' : `+ ${l}`);
  }
  if (r.lint.length > 0) {
    out.push('lint of the added lines:');
    for (const f of r.lint)
      out.push(`  ${path.join(dir, f.file)}:${f.line}: ${f.severity}: ${f.message} [${f.id}]`);
  }
  if (r.tests !== '') {
    out.push(`policy tests (save as ${path.join(dir, 'tests', 'suggested.yaml')}):`);
    for (const l of r.tests.trimEnd().split('\n')) out.push(`  ${l}`);
  }
  out.push(`policy diff ${dir} -> proposal, replayed on the same calls:`);
  for (const l of formatDiff(dir, 'proposal', r.diff, limit).trimEnd().split('\n')) out.push(`  ${l}`);
  return out.join('\n') + '\n';
}

/**
 * `airlock policy suggest DIR --audit FILE...`: propose allow lines for the recorded calls.
 * @returns 0; 1 when some recorded calls are blocked by deny rules (nothing can be suggested for
 *   them) or the proposal has lint errors.
 * @throws CliError (exit 2) for an invalid/missing policy, an unreadable or malformed audit file, or
 *   a bad `--since`.
 */
export async function policySuggest(dir: string, opts: SuggestOptions, io: Output = stdio): Promise<number> {
  const since = opts.since === undefined ? undefined : parseSince(opts.since);
  const policy = await loadOrExit(dir);
  const calls = await readAuditFiles<ObservedCall | null>(opts.audit, parseObservedLines);
  const r = suggestPolicy(policy, calls, { role: opts.role, session: opts.session, since });
  const lintErrors = r.lint.filter((f) => f.severity === 'error').length;
  const ok = r.blocked.length === 0 && lintErrors === 0;
  if (opts.json) {
    const obs = (o: SuggestReport['allowed'][number]): object => ({
      role: o.request.role,
      method: o.request.method,
      host: o.request.host,
      path: o.request.path,
      url: `${o.scheme}://${o.request.host}${o.request.path}`,
      count: o.count,
      rule: o.decision.rule,
    });
    io.out(
      JSON.stringify(
        {
          dir,
          ok,
          version: policy.version,
          proposedVersion: r.proposed.version,
          events: r.events,
          considered: r.considered,
          skipped: r.skipped,
          lines: r.lines.map((l) => ({
            line: l.line,
            text: l.text,
            role: l.role,
            host: l.host,
            path: l.path,
            method: l.method,
            covers: l.covers.map(obs),
          })),
          blocked: r.blocked.map(obs),
          allowed: r.allowed.map(obs),
          addition: r.addition,
          lint: r.lint,
          tests: r.tests,
          diff: r.diff,
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    io.out(formatSuggest(dir, r, opts.limit ?? 100));
  }
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------------------
// registration

function exitWith(code: number): void {
  process.exitCode = code;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** `airlock policy ...` subcommands (docs/policy.md "Policy tools"). Usage errors exit 2. */
export function registerPolicyCommands(program: Command): void {
  const policy = program
    .command('policy')
    .description(
      'check, test, explain, diff and suggest policy directories (exit 0 ok, 1 findings, 2 usage/input)',
    )
    .exitOverride((err: CommanderError) => {
      // Commander has already printed the message (or the help).
      process.exit(err.exitCode === 0 ? 0 : 2);
    });

  policy
    .command('check')
    .description('parse, validate and lint a policy directory; prints FILE:LINE: SEVERITY: MESSAGE')
    .argument('<dir>', 'policy directory (model.conf, policy.csv, tests/)')
    .option('--strict', 'warnings fail the check too')
    .option('--json', 'machine-readable output')
    .option(
      '--config <file>',
      'also check credentials.yaml against this Airlock config (passthrough hosts; Docker credential mounts)',
    )
    .option(
      '--secrets <names>',
      "Secrets the gateways may read (the chart's gateway.credentialSecrets), comma-separated",
      (v: string) =>
        v
          .split(',')
          .map((n) => n.trim())
          .filter((n) => n !== ''),
    )
    .action(async (dir: string, opts: CheckOptions) => exitWith(await policyCheck(dir, opts)));

  policy
    .command('test')
    .description("run the policy's tests/*.yaml cases; prints a diff-like report of failures")
    .argument('<dir>', 'policy directory')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, opts: { json?: boolean }) => exitWith(await policyTest(dir, opts)));

  policy
    .command('explain')
    .description('decide one request and show why: role chain, every matching rule, the deciding one')
    .argument('<dir>', 'policy directory')
    .argument('<method>', 'HTTP method (GET, POST, CONNECT, ...)')
    .argument('<url>', 'absolute http:// or https:// URL')
    .requiredOption('-r, --role <role>', 'the role making the request')
    .option('--casbin', 'also decide with a real Casbin enforcer and compare')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, method: string, url: string, opts: ExplainOptions) =>
      exitWith(await policyExplain(dir, method, url, opts)),
    );

  policy
    .command('diff')
    .description('replay recorded calls (audit JSON lines) through two policies; list changed decisions')
    .argument('<old>', 'policy directory before the change')
    .argument('<new>', 'policy directory after the change')
    .addOption(
      new Option('-a, --audit <file>', 'audit file (JSON lines); repeat for several')
        .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
        .makeOptionMandatory(),
    )
    .option('--json', 'machine-readable output')
    .option('--limit <n>', 'changed calls to print', positiveInt, 100)
    .action(async (oldDir: string, newDir: string, opts: DiffOptions) =>
      exitWith(await policyDiff(oldDir, newDir, opts)),
    );

  policy
    .command('suggest')
    .description('propose allow lines, tests and their diff from recorded calls (audit JSON lines)')
    .argument('<dir>', 'the current policy directory')
    .addOption(
      new Option('-a, --audit <file>', 'audit file (JSON lines); repeat for several')
        .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
        .makeOptionMandatory(),
    )
    .option('-r, --role <role>', 'only calls of this role')
    .option('--session <id>', 'only calls of this session')
    .option('--since <time>', 'only calls at or after this ISO time, or within a duration (15m, 2h, 7d)')
    .option('--json', 'machine-readable output')
    .option('--limit <n>', 'changed calls of the diff to print', positiveInt, 100)
    .action(async (dir: string, opts: SuggestOptions) => exitWith(await policySuggest(dir, opts)));

  registerPolicySyncCommand(policy);
}
