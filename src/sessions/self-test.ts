/**
 * The isolation self-test (issue 13 item 5; docs/security.md "Isolation self-test"): before a session
 * is reported `running`, a probe from inside its sandbox must fail to reach this machine's own
 * addresses (a listener the control plane opens for the test), the gateway's admin API and the
 * project's other networks, and must reach the gateway's proxy port. Probes target only the
 * machine's own addresses and the project's own networks, never an outside address.
 *
 * The probe is one `bash` run through the runtime's exec (bash's `/dev/tcp`, no other tool): every
 * target is tried at once, each connect bounded by {@link PROBE_CONNECT_TIMEOUT_MS}. The verdict does
 * not rest on what the sandbox prints alone: any connection the control plane's listener accepts
 * during the test is a breach too.
 */
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ExecResult, IsolationTargets } from '../runtime/types.js';

/** Connect deadline of every probe, ms (a local connect completes in well under 1 ms). */
export const PROBE_CONNECT_TIMEOUT_MS = 500;
/** How long a probe that connected to an HTTP target waits for the status line, ms. */
export const PROBE_ANSWER_TIMEOUT_MS = 1_000;
/** Deadline of the whole exec (process start, probes, output), ms. */
export const PROBE_EXEC_TIMEOUT_MS = 10_000;

/** What a target is, for the report and the rules below. */
export type ProbeKind = 'host-address' | 'gateway-admin' | 'other-network' | 'gateway-proxy';

/** One connection the probe tries from inside the sandbox. */
export interface ProbeTarget {
  /** `p0`, `p1`, ...: the key of its output lines. */
  id: string;
  kind: ProbeKind;
  /** IP literal. */
  host: string;
  port: number;
  /** For the report: interface or network name. */
  label: string;
  /** Send `GET /healthz` after connecting and report the status line (the admin API). */
  http: boolean;
}

/** What the probe saw for one target. `timeout`: no answer within the connect deadline. */
export interface ProbeOutcome {
  state: 'open' | 'closed' | 'timeout';
  /** Status line of an HTTP target that connected, when one arrived. */
  answer?: string;
}

/** One address of this machine, from `os.networkInterfaces()`. */
export interface HostAddress {
  iface: string;
  address: string;
}

/**
 * This machine's own addresses a sandbox must not reach: every interface's address (bridges
 * included) except loopback (inside a sandbox that is the sandbox's own), IPv6 link-local (it needs
 * a scope only the host side knows) and `exclude` (the gateway's own address, when a runtime puts it
 * on the host). Deduplicated, in interface order.
 */
export function hostAddresses(
  exclude: ReadonlySet<string> = new Set(),
  ifaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): HostAddress[] {
  const seen = new Set<string>();
  const out: HostAddress[] = [];
  for (const [iface, addrs] of Object.entries(ifaces)) {
    for (const a of addrs ?? []) {
      if (a.internal || seen.has(a.address) || exclude.has(a.address)) continue;
      if (a.family === 'IPv6' && /^fe[89ab]/i.test(a.address)) continue;
      if (net.isIP(a.address) === 0) continue;
      seen.add(a.address);
      out.push({ iface, address: a.address });
    }
  }
  return out;
}

/**
 * The probe plan: the gateway's proxy (must connect), the admin API, the other networks, and this
 * machine's addresses at `listenerPort` (must not connect). Targets that are not IP literals or have
 * no valid port are dropped (nothing but literals ever reaches the script).
 */
export function buildProbePlan(
  targets: IsolationTargets,
  hosts: readonly HostAddress[],
  listenerPort: number,
): ProbeTarget[] {
  const plan: Array<Omit<ProbeTarget, 'id'>> = [
    { kind: 'gateway-proxy', ...targets.gateway, label: 'gateway proxy', http: false },
    ...targets.admin.map((a) => ({
      kind: 'gateway-admin' as const,
      ...a,
      label: 'gateway admin API',
      http: true,
    })),
    ...targets.otherNetworks.map((o) => ({
      kind: 'other-network' as const,
      host: o.host,
      port: o.port,
      label: o.name,
      http: false,
    })),
    ...hosts
      .filter((h) => h.address !== targets.gateway.host)
      .map((h) => ({
        kind: 'host-address' as const,
        host: h.address,
        port: listenerPort,
        label: `this machine (${h.iface})`,
        http: false,
      })),
  ];
  return plan
    .filter((t) => net.isIP(t.host) !== 0 && Number.isInteger(t.port) && t.port > 0 && t.port < 65536)
    .map((t, i) => ({ id: `p${i}`, ...t }));
}

/**
 * The bash script that runs `plan` inside the sandbox. Each target is tried in its own subshell
 * (`/dev/tcp`), all at once; a watchdog kills those still connecting after `connectTimeoutMs`. An
 * HTTP target that connected ignores the watchdog and waits up to `answerTimeoutMs` for its status
 * line. Output: `<id> open|closed`, `<id> answer <status line>`, and `done` last.
 */
export function probeScript(
  plan: readonly ProbeTarget[],
  connectTimeoutMs = PROBE_CONNECT_TIMEOUT_MS,
  answerTimeoutMs = PROBE_ANSWER_TIMEOUT_MS,
): string {
  const secs = (ms: number): string => (ms / 1000).toFixed(3);
  const lines = [
    'probe() {',
    '  if exec 3<>"/dev/tcp/$2/$3"; then',
    "    trap '' TERM",
    '    echo "$1 open"',
    '    if [ -n "$4" ]; then',
    '      printf \'GET /healthz HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n\' "$2" >&3',
    `      IFS= read -r -t ${secs(answerTimeoutMs)} line <&3 && echo "$1 answer \${line%$'\\r'}"`,
    '    fi',
    '    exec 3>&-',
    '  else',
    '    echo "$1 closed"',
    '  fi',
    '}',
    'pids=""',
    ...plan.map(
      (t) => `probe ${t.id} ${t.host} ${t.port} ${t.http ? 'http' : '""'} 2>/dev/null & pids="$pids $!"`,
    ),
    `(sleep ${secs(connectTimeoutMs)}; kill $pids) >/dev/null 2>&1 & w=$!`,
    'wait $pids 2>/dev/null',
    'kill $w 2>/dev/null',
    'echo done',
  ];
  return lines.join('\n') + '\n';
}

/**
 * Reads the script's output. Targets without a line were still connecting when the watchdog fired
 * (`timeout`). @returns null when the output lacks the final `done` (the script did not run through).
 */
export function parseProbeOutput(
  plan: readonly ProbeTarget[],
  stdout: string,
): Map<string, ProbeOutcome> | null {
  const ids = new Set(plan.map((t) => t.id));
  const out = new Map<string, ProbeOutcome>();
  let done = false;
  for (const raw of stdout.split('\n')) {
    const line = raw.trimEnd();
    if (line === 'done') done = true;
    const m = /^(p\d+) (open|closed|answer)(?: (.*))?$/.exec(line);
    if (!m || !ids.has(m[1]!)) continue;
    const id = m[1]!;
    if (m[2] === 'answer') {
      const o = out.get(id) ?? { state: 'open' };
      o.answer = (m[3] ?? '').slice(0, 200);
      out.set(id, o);
    } else if (m[2] === 'open') out.set(id, { ...out.get(id), state: 'open' });
    // "closed" never overrides "open" (a lying or confused line must not hide a connection).
    else if (!out.has(id)) out.set(id, { state: 'closed' });
  }
  if (!done) return null;
  for (const t of plan) if (!out.has(t.id)) out.set(t.id, { state: 'timeout' });
  return out;
}

/** The self-test's verdict. `fail`: something connected that must not; `error`: isolation not shown. */
export type SelfTestResult = 'pass' | 'fail' | 'error';

export interface SelfTestReport {
  result: SelfTestResult;
  /** One sentence per finding (empty on pass). */
  findings: string[];
  /** Wall time of the whole test (listener, targets, exec, verdict), ms. */
  durationMs: number;
  /** Number of probes run. */
  probes: number;
}

/** The admin API refuses a sandbox's address with 403 before looking at anything else. */
const ADMIN_REFUSED = /^HTTP\/1\.[01] 403\b/;

/**
 * The verdict from the probe outcomes and the connections the control plane's listener accepted
 * (`listenerHits`: remote addresses). Rules, in order:
 * 1. any listener hit, any `host-address` or `other-network` target that connected → fail;
 * 2. a `gateway-admin` target that connected and did not answer 403 → fail;
 * 3. the `gateway-proxy` target did not connect → error (the probe cannot have worked, or the
 *    session could not use its gateway).
 */
export function judge(
  plan: readonly ProbeTarget[],
  outcomes: ReadonlyMap<string, ProbeOutcome>,
  listenerHits: readonly string[],
): { result: SelfTestResult; findings: string[] } {
  const breaches: string[] = [];
  const errors: string[] = [];
  for (const hit of listenerHits)
    breaches.push(`the control plane's test listener accepted a connection from ${hit}`);
  for (const t of plan) {
    const o = outcomes.get(t.id) ?? { state: 'timeout' };
    const where = `${t.label} ${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
    if (t.kind === 'gateway-proxy') {
      if (o.state !== 'open') errors.push(`${where} not reachable from the sandbox (${o.state})`);
    } else if (t.kind === 'gateway-admin') {
      if (o.state === 'open' && !ADMIN_REFUSED.test(o.answer ?? ''))
        breaches.push(
          `${where} answered the sandbox (${o.answer ? JSON.stringify(o.answer) : 'no status line'})`,
        );
    } else if (o.state === 'open') breaches.push(`${where} reachable from the sandbox`);
  }
  if (breaches.length > 0) return { result: 'fail', findings: [...breaches, ...errors] };
  if (errors.length > 0) return { result: 'error', findings: errors };
  return { result: 'pass', findings: [] };
}

/** A TCP listener on every local address (dual-stack `::`, else `0.0.0.0`) that records who connects. */
async function openListener(): Promise<{ port: number; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = net.createServer((s) => {
    hits.push(`${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`);
    s.destroy();
  });
  const listen = (host: string): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    await listen('::');
  } catch {
    await listen('0.0.0.0');
  }
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    hits,
    close: async () => {
      // Let connections the kernel completed reach the 'connection' handler before closing.
      await new Promise((r) => setImmediate(r));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What {@link runIsolationSelfTest} needs. */
export interface SelfTestOptions {
  /** Runs a command in the sandbox (the runtime's exec, bound to the session). */
  exec: (command: string[], timeoutMs: number) => Promise<ExecResult>;
  /** The runtime's targets for this sandbox. */
  targets: () => Promise<IsolationTargets>;
  /** This machine's addresses. @default hostAddresses(exclude: the gateway's address) */
  hosts?: (exclude: ReadonlySet<string>) => HostAddress[];
  /** @default PROBE_CONNECT_TIMEOUT_MS */
  connectTimeoutMs?: number;
}

/**
 * Runs the self-test for one started sandbox. Never throws: a failing exec or runtime call is an
 * `error` report naming it.
 */
export async function runIsolationSelfTest(opts: SelfTestOptions): Promise<SelfTestReport> {
  const t0 = performance.now();
  const report = (result: SelfTestResult, findings: string[], probes: number): SelfTestReport => ({
    result,
    findings,
    probes,
    durationMs: Math.round((performance.now() - t0) * 10) / 10,
  });
  let listener: Awaited<ReturnType<typeof openListener>> | null = null;
  let plan: ProbeTarget[] = [];
  try {
    listener = await openListener();
    const targets = await opts.targets();
    const hosts = (opts.hosts ?? hostAddresses)(new Set([targets.gateway.host]));
    plan = buildProbePlan(targets, hosts, listener.port);
    const script = probeScript(plan, opts.connectTimeoutMs ?? PROBE_CONNECT_TIMEOUT_MS);
    const r = await opts.exec(['bash', '-c', script], PROBE_EXEC_TIMEOUT_MS);
    await listener.close();
    const outcomes = parseProbeOutput(plan, r.stdout);
    const hits = listener.hits;
    listener = null;
    if (!outcomes) {
      const why = (r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 200) ?? '';
      const verdict = judge(plan, new Map(), hits);
      const findings = [
        ...verdict.findings.filter((f) => !f.startsWith('gateway proxy')),
        `the probe did not run through (exit code ${r.exitCode}${why ? `: ${why}` : ''}); the sandbox image needs bash`,
      ];
      return report(hits.length > 0 ? 'fail' : 'error', findings, plan.length);
    }
    const verdict = judge(plan, outcomes, hits);
    return report(verdict.result, verdict.findings, plan.length);
  } catch (err) {
    const hits = listener?.hits ?? [];
    await listener?.close().catch(() => undefined);
    const verdict = judge([], new Map(), hits);
    return report(
      hits.length > 0 ? 'fail' : 'error',
      [...verdict.findings, `the probe could not run: ${(err as Error).message}`],
      plan.length,
    );
  }
}

/**
 * The self-test's Prometheus metrics (served by the API's `/metrics` when registered on its registry):
 * - `airlock_isolation_selftest_total{result="pass|fail|error"}` — self-tests run, by verdict;
 * - `airlock_isolation_selftest_duration_seconds{result}` — histogram of their wall time, seconds.
 */
export class SelfTestMetrics {
  readonly runs: Counter<'result'>;
  readonly duration: Histogram<'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: 'airlock_isolation_selftest_total',
      help: 'Isolation self-tests run at session start, by result (pass, fail: a forbidden target connected, error: isolation could not be shown).',
      labelNames: ['result'],
      registers,
    });
    this.duration = new Histogram({
      name: 'airlock_isolation_selftest_duration_seconds',
      help: 'Wall time of the isolation self-test at session start, seconds.',
      labelNames: ['result'],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    for (const result of ['pass', 'fail', 'error']) this.runs.inc({ result }, 0);
  }

  observe(r: SelfTestReport): void {
    this.runs.inc({ result: r.result });
    this.duration.observe({ result: r.result }, r.durationMs / 1000);
  }
}
