/**
 * The one-node cluster of scripts/k8s-node.sh for e2e tests: a real kubelet, containerd, kube-proxy,
 * kube-router (NetworkPolicy) and CoreDNS, brought up by CI before the e2e tier (`k8s-node.sh up`)
 * and taken down after it. Tests never start or stop the cluster themselves (one per machine: fixed
 * host paths); they fail, naming the command to run, when it is not up.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { k8sTools, repoRoot } from './k8s.js';

const run = promisify(execFile);
const nodeScript = path.join(repoRoot, 'scripts/k8s-node.sh');

/** What `scripts/k8s-node.sh env` prints. */
export interface NodeEnv {
  kubeconfig: string;
  nodeName: string;
  /** The node's own address: Pods reach the API server and the tests' upstreams here. */
  nodeIp: string;
  podCidr: string;
  serviceCidr: string;
  clusterDns: string;
  apiClusterIp: string;
  clusterDomain: string;
  kubectl: string;
  helm: string;
}

/**
 * The running node's settings. Never starts a cluster, never skips.
 * @throws Error naming `scripts/k8s-node.sh up` when the node is not Ready.
 */
export async function requireNode(): Promise<NodeEnv> {
  try {
    await run('bash', [nodeScript, 'status'], { timeout: 60_000 });
  } catch (err) {
    const e = err as { code?: unknown; stderr?: unknown };
    throw new Error(
      `the one-node cluster is not Ready (k8s-node.sh status exit ${String(e.code)}: ` +
        `${String(e.stderr ?? '').trim()}). Bring it up with: bash scripts/k8s-node.sh up ` +
        '(CI does this before the e2e tier; tools: bash scripts/k8s-node-tools.sh)',
      { cause: err },
    );
  }
  const { stdout } = await run('bash', [nodeScript, 'env']);
  const kv = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const tools = k8sTools();
  return {
    kubeconfig: kv.KUBECONFIG ?? '',
    nodeName: kv.NODE_NAME ?? '',
    nodeIp: kv.NODE_IP ?? '',
    podCidr: kv.POD_CIDR ?? '',
    serviceCidr: kv.SERVICE_CIDR ?? '',
    clusterDns: kv.CLUSTER_DNS ?? '',
    apiClusterIp: kv.API_CLUSTER_IP ?? '',
    clusterDomain: kv.CLUSTER_DOMAIN ?? '',
    kubectl: tools.kubectl,
    helm: tools.helm,
  };
}

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never throws for a non-zero exit (the result says), only for a timeout. */
export function cmd(file: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000) {
  return new Promise<CmdResult>((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err && (err as { killed?: boolean }).killed)
          return reject(
            new Error(`${path.basename(file)} ${args.join(' ')}: timed out after ${timeoutMs} ms`),
          );
        const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
        resolve({ code: Number.isFinite(code) ? code : 1, stdout, stderr });
      },
    );
  });
}

/** kubectl against the node; throws with its stderr on a non-zero exit. */
export async function kubectl(n: NodeEnv, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await cmd(n.kubectl, ['--kubeconfig', n.kubeconfig, ...args], {}, timeoutMs);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** helm against the node; returns the whole result (tests assert on failures too). */
export function helm(n: NodeEnv, args: string[], timeoutMs = 300_000): Promise<CmdResult> {
  return cmd(n.helm, ['--kubeconfig', n.kubeconfig, ...args], {}, timeoutMs);
}

/** Runs a shell script in a Pod's first container (kubectl exec: apiserver -> kubelet -> CRI). */
export function podSh(n: NodeEnv, ns: string, pod: string, script: string, timeoutMs = 60_000) {
  return cmd(
    n.kubectl,
    ['--kubeconfig', n.kubeconfig, '-n', ns, 'exec', pod, '--', 'sh', '-c', script],
    {},
    timeoutMs,
  );
}

/**
 * A TCP connect from inside a Pod, with no proxy: true when it connected within `seconds`.
 * (bash's /dev/tcp: no client of ours in the way, the same in every image that has bash.)
 */
export async function podConnects(
  n: NodeEnv,
  ns: string,
  pod: string,
  host: string,
  port: number,
  seconds = 3,
): Promise<boolean> {
  const r = await podSh(
    n,
    ns,
    pod,
    `if timeout ${seconds} bash -c 'exec 3<>/dev/tcp/${host}/${port}' 2>/dev/null; then echo CONNECTED; else echo BLOCKED; fi`,
  );
  if (r.code !== 0 || !/CONNECTED|BLOCKED/.test(r.stdout))
    throw new Error(`probe ${host}:${port} from ${ns}/${pod} did not run: ${r.code} ${r.stdout} ${r.stderr}`);
  return r.stdout.includes('CONNECTED');
}

/** Polls `check` every 250 ms until it returns true; throws naming `what` after `timeoutMs`. */
export async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
      last = null;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`,
  );
}

/** NetworkPolicy enforcement off (kube-router stopped, its rules removed) or on again. */
export async function setEnforcer(on: boolean): Promise<void> {
  const r = await cmd('bash', [nodeScript, on ? 'enforcer-start' : 'enforcer-stop'], {}, 120_000);
  if (r.code !== 0) throw new Error(`k8s-node.sh enforcer-${on ? 'start' : 'stop'}: ${r.stderr}`);
}

/** `kubectl port-forward` to a Service or Pod on a free local port, ready when it resolves. */
export async function portForward(
  n: NodeEnv,
  ns: string,
  target: string,
  remotePort: number,
): Promise<{ port: number; stop(): Promise<void> }> {
  const proc: ChildProcess = spawn(
    n.kubectl,
    [
      '--kubeconfig',
      n.kubeconfig,
      '-n',
      ns,
      'port-forward',
      '--address',
      '127.0.0.1',
      target,
      `:${remotePort}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`port-forward ${target}: no port within 30 s: ${err}`)),
      30_000,
    );
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`port-forward ${target} exited ${code}: ${err}`));
    });
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/**
 * A TCP listener on a link-local address of a bridge this test creates on the node (the kernel has
 * no dummy interfaces): a stand-in for a cloud metadata service. Answers "metadata" and closes.
 */
export async function linkLocalListener(
  bridge = 'airll0',
  ip = '169.254.169.254',
  port = 80,
): Promise<{ ip: string; port: number; stop(): Promise<void> }> {
  const ipcmd = (args: string[]) => cmd('ip', args);
  await ipcmd(['link', 'del', bridge]); // a leftover of an aborted run
  for (const args of [
    ['link', 'add', bridge, 'type', 'bridge'],
    ['addr', 'add', `${ip}/32`, 'dev', bridge],
    ['link', 'set', bridge, 'up'],
  ]) {
    const r = await ipcmd(args);
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  }
  const server = net.createServer((s) => {
    s.on('error', () => undefined); // probes that reset the connection
    s.end('metadata\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => resolve());
  });
  return {
    ip,
    port,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ipcmd(['link', 'del', bridge]);
    },
  };
}
