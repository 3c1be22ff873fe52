/**
 * The README's quick start, run as written (issue 11 part 0): the command lines are taken from
 * README.md's own text — `scripts/serve.sh` from "Set-up", then the "Use it" block and the sandbox
 * API block in a second shell — with only the placeholders `<session-id>` and `<id>` replaced by the
 * ids the earlier lines printed. An `airlock-egress` network left by an "earlier run" with another
 * subnet is in place first: serve must re-create it, not reuse it. Everything is local (the demo
 * forum listens on the egress network's host address); afterwards nothing is left: Airlock's
 * containers and networks are removed and `.airlock/` is restored to what it was.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EGRESS_NETWORK, LABEL } from '../../src/runtime/docker/labels.js';
import { docker, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';

const ROOT = process.cwd();
const STATE = path.join(ROOT, '.airlock');
const BACKUP = path.join(ROOT, `.airlock.readme-test-${process.pid}`);
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const EGRESS_SUBNET = '10.214.0.0/24'; // airlock.example.yaml
/** scripts/serve.sh runs setup.sh, which would re-install node_modules under other running tests. */
const ENV = { ...process.env, AIRLOCK_SKIP_NPM_CI: '1' };

/** The lines of the first ```sh block after `heading` (continuation lines joined). */
function shBlock(heading: string): string[] {
  const at = README.indexOf(heading);
  if (at < 0) throw new Error(`README.md has no "${heading}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(README.slice(at));
  if (!m?.[1]) throw new Error(`README.md has no sh block after "${heading}"`);
  return m[1]
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** Whether something accepts TCP connections on host:port. */
function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

interface LineResult {
  line: string;
  rc: number;
  out: string;
  err: string;
}

/**
 * Runs `lines` one after another in one bash process (so `export` and variables carry over), each
 * with its own stdout/stderr captured; `subst` replaces placeholders by shell expressions.
 */
function runLines(lines: string[], subst: Record<string, string>, preamble: string): LineResult[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-readme-'));
  try {
    const script = [
      'cd ' + JSON.stringify(ROOT),
      `D=${JSON.stringify(dir)}`,
      preamble,
      ...lines.map((l, i) => {
        let cmd = l;
        for (const [k, v] of Object.entries(subst)) cmd = cmd.replaceAll(k, v);
        return `{ ${cmd}\n} >"$D/out.${i}" 2>"$D/err.${i}" </dev/null; echo $? >"$D/rc.${i}"`;
      }),
    ].join('\n');
    const r = spawnSync('bash', ['-c', script], { env: ENV, timeout: 300_000 });
    if (r.error) throw r.error;
    return lines.map((line, i) => {
      const f = (n: string): string => {
        const p = path.join(dir, `${n}.${i}`);
        return existsSync(p) ? readFileSync(p, 'utf8') : '';
      };
      return { line, rc: Number(f('rc').trim() || '-1'), out: f('out'), err: f('err') };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const find = (results: LineResult[], start: string): LineResult => {
  const r = results.find((x) => x.line.startsWith(start));
  if (!r) throw new Error(`no README line starts with ${start}`);
  return r;
};

let serve: ChildProcess | null = null;
let serveOutput = '';
const hadState = existsSync(STATE);

async function stopServe(): Promise<void> {
  const p = serve;
  serve = null;
  if (!p || p.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    // The whole process group: serve.sh, airlock serve and the demo forum.
    const group = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-p.pid!, sig);
      } catch {
        // already gone
      }
    };
    group('SIGTERM');
    setTimeout(() => group('SIGKILL'), 20_000).unref();
  });
}

async function removeEgressNetwork(): Promise<void> {
  await docker
    .getNetwork(EGRESS_NETWORK)
    .remove()
    .catch(() => undefined);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  for (const [host, port] of [['127.0.0.1', 8080]] as const) {
    if (await listening(host, port)) throw new Error(`${host}:${port} is in use: the README's API address`);
  }
  await removeAirlockObjects();
  await removeEgressNetwork();
  if (hadState) renameSync(STATE, BACKUP);
});

afterAll(async () => {
  await stopServe();
  await removeAirlockObjects();
  await removeEgressNetwork();
  rmSync(STATE, { recursive: true, force: true });
  if (hadState) renameSync(BACKUP, STATE);
});

describe('README quick start, verbatim', () => {
  it('serve.sh, then the "Use it" and sandbox API blocks as written', { timeout: 900_000 }, async () => {
    // An earlier run's egress network with another subnet (the 172.18.0.0/16 case).
    await docker.createNetwork({
      Name: EGRESS_NETWORK,
      Driver: 'bridge',
      Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'egress' },
      IPAM: { Driver: 'default', Config: [{ Subnet: '10.215.7.0/24', Gateway: '10.215.7.1' }] },
    });

    const setup = shBlock('## Set-up');
    const serveLine = setup.find((l) => l.startsWith('scripts/serve.sh'));
    expect(serveLine).toBeDefined();
    serve = spawn('bash', ['-c', serveLine!], {
      cwd: ROOT,
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer): void => {
        serveOutput += b.toString();
        if (/\[serve\] demo forum: forum\.test:3000/.test(serveOutput) && /^ready: /m.test(serveOutput)) {
          resolve();
        }
      };
      serve!.stdout!.on('data', onData);
      serve!.stderr!.on('data', onData);
      serve!.once('exit', (code) =>
        reject(new Error(`scripts/serve.sh exited (${code}) before ready:\n${serveOutput.slice(-4000)}`)),
      );
    });
    await ready;
    const info = await docker.getNetwork(EGRESS_NETWORK).inspect();
    expect(info.IPAM?.Config?.[0]?.Subnet).toBe(EGRESS_SUBNET);
    expect(serveOutput).toContain(
      'subnet 10.215.7.0/24, config runtime.docker.egressSubnet 10.214.0.0/24: re-creating it',
    );

    // The web console the README points to is served by the same command.
    const ui = await fetch('http://127.0.0.1:8080/ui/');
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-security-policy')).toContain("script-src 'self'");

    // The second terminal: "Use it", as written.
    const use = shBlock('## Use it');
    expect(use[0]).toBe('export PATH="$PWD/bin:$PATH"      # or: npm link');
    const firstSession = `"$(sed -n 's/^airlock: session \\(s-[^ ]*\\) .*/\\1/p' "$D/err.1" | head -n1)"`;
    const results = runLines(use, { '<session-id>': firstSession }, '');
    const report = JSON.stringify(results, null, 2);

    const allowed = find(results, 'airlock run --role analyst -- curl -s http://forum.test:3000/posts/1');
    expect(allowed.rc, report).toBe(0);
    expect(JSON.parse(allowed.out)).toMatchObject({
      id: 1,
      title: 'How do I open port 22 for the ops group?',
    });
    expect(allowed.err).toMatch(/^airlock: session s-\S+ \(role analyst\)$/m);

    const denied = find(results, 'airlock run --role analyst -- curl -s -X POST');
    expect(denied.rc, report).toBe(0);
    expect(JSON.parse(denied.out)).toMatchObject({
      error: 'egress_denied',
      role: 'analyst',
      method: 'POST',
      url: 'http://forum.test:3000/comments',
    });

    expect(find(results, 'airlock sessions ls').rc, report).toBe(0);
    expect(find(results, 'airlock credentials ls').rc, report).toBe(0);
    const audit = find(results, 'airlock audit <session-id> --follow');
    expect(audit.rc, report).toBe(0);
    // JSON lines, one per decision of the finished session; --follow returned once it had ended.
    const trail = audit.out
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { method: string; host: string; port: number; path: string; decision: string },
      );
    expect(trail).toContainEqual(
      expect.objectContaining({
        method: 'GET',
        host: 'forum.test',
        port: 3000,
        path: '/posts/1',
        decision: 'allow',
      }),
    );
    const suggest = find(results, 'airlock policy suggest policies');
    expect(suggest.rc, report).toBe(0);
    expect(suggest.out).toContain('analyst');

    // The sandbox API block, as written, with <id> the id the create line answered.
    const apiLines = shBlock('The sandbox API');
    const createdId = `"$(sed -n 's/.*"id":"\\(s-[^"]*\\)".*/\\1/p' "$D/out.1")"`;
    const api = runLines(apiLines, { '<id>': createdId }, '');
    const apiReport = JSON.stringify(api, null, 2);
    expect(
      api.map((r) => r.rc),
      apiReport,
    ).toEqual(api.map(() => 0));
    const created = JSON.parse(api[1]!.out) as { id: string; role: string; status: string };
    expect(created).toMatchObject({ role: 'analyst', status: 'running' });
    const exec = JSON.parse(api[2]!.out) as { exitCode: number; stdout: string };
    expect(exec.exitCode, apiReport).toBe(0);
    expect(JSON.parse(exec.stdout)).toMatchObject({ id: 1 });
    const events = (JSON.parse(api[3]!.out) as { events: Array<{ path: string; decision: string }> }).events;
    expect(
      events.some((e) => e.path === '/posts/1' && e.decision === 'allow'),
      apiReport,
    ).toBe(true);
    expect(api[4]!.out).toBe(''); // 204 for the kill switch
    expect(
      (await docker.listContainers({ filters: { label: [`${LABEL.session}=${created.id}`] } })).length,
    ).toBe(0);

    await stopServe();
  });

  it("refuses an airlock-egress network that is not Airlock's, naming the difference", async () => {
    await removeAirlockObjects();
    await removeEgressNetwork();
    await docker.createNetwork({
      Name: EGRESS_NETWORK,
      Driver: 'bridge',
      IPAM: { Driver: 'default', Config: [{ Subnet: '10.215.8.0/24', Gateway: '10.215.8.1' }] },
    });
    const r = spawnSync(process.execPath, ['dist/cli/main.js', 'serve', '--config', 'airlock.example.yaml'], {
      cwd: ROOT,
      env: ENV,
      timeout: 120_000,
      encoding: 'utf8',
    });
    expect(r.status).not.toBe(0);
    const text = r.stdout + r.stderr;
    expect(text).toContain('subnet 10.215.8.0/24, config runtime.docker.egressSubnet 10.214.0.0/24');
    expect(text).toContain('not created by Airlock');
    // Left alone: still the foreign network.
    const info = await docker.getNetwork(EGRESS_NETWORK).inspect();
    expect(info.IPAM?.Config?.[0]?.Subnet).toBe('10.215.8.0/24');
  });
});
