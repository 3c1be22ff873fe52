/**
 * Building blocks of the Airlock benchmark (bench/run.mjs): tools, the three servers (nginx upstream,
 * Airlock gateway process, squid), the two load generators (wrk, bench/rate-client.mjs) and CPU
 * accounting from /proc. Loopback only.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, '..');
export const env = (name, dflt) => (process.env[name] === undefined ? dflt : Number(process.env[name]));
export const CFG = {
  satSeconds: env('BENCH_SAT_SECONDS', 4),
  satRounds: env('BENCH_SAT_ROUNDS', 3),
  warmupSeconds: env('BENCH_WARMUP_SECONDS', 2),
  connections: env('BENCH_CONNECTIONS', 32),
  wrkThreads: env('BENCH_WRK_THREADS', 1),
  rate: env('BENCH_RATE', 1000),
  rateSeconds: env('BENCH_RATE_SECONDS', 5),
  rateRounds: env('BENCH_RATE_ROUNDS', 2),
  rateWarmupSeconds: env('BENCH_RATE_WARMUP_SECONDS', 1),
  rateConnections: env('BENCH_CONNECTIONS', 32),
  squidAccessLog: env('BENCH_SQUID_ACCESS_LOG', 1) === 1,
  bodyBytes: 256,
};
export const UPSTREAM_NAME = 'upstream.test';
/** Background CPU (cores used by processes the bench did not start) above which a run is flagged. */
export const NOISY_CORES = 0.1;
export const SESSION = { id: 's-bench', cred: 'bench-credential-0123456789abcdef', role: 'bench' };
export const log = (msg) => process.stderr.write(`bench: ${msg}\n`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Tools

export function which(bin) {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const p = path.join(dir, bin);
    if (existsSync(p)) return p;
  }
  return null;
}

/** Installs the Debian packages the bench needs when missing (root only); stops a system squid. */
export function ensureTools() {
  const need = { nginx: 'nginx-light', squid: 'squid', wrk: 'wrk' };
  const missing = Object.entries(need).filter(([bin]) => !which(bin));
  if (missing.length > 0) {
    const pkgs = missing.map(([, pkg]) => pkg);
    if (process.env.BENCH_NO_INSTALL === '1' || process.getuid?.() !== 0) {
      throw new Error(`missing ${missing.map(([b]) => b).join(', ')}: apt-get install ${pkgs.join(' ')}`);
    }
    log(`installing ${pkgs.join(' ')} (Debian)`);
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () =>
      execFileSync('apt-get', ['install', '-y', '-qq', ...pkgs], {
        env: aptEnv,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    try {
      install();
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { env: aptEnv, stdio: ['ignore', 'ignore', 'inherit'] });
      install();
    }
  }
  // The Debian squid service would compete for the CPU (and, on :3128, for nothing of ours: our
  // instance has its own port, pid file and service name). Stop it only if it runs.
  try {
    execFileSync('service', ['squid', 'status'], { stdio: 'ignore' });
    log('stopping the system squid service');
    execFileSync('service', ['squid', 'stop'], { stdio: 'ignore' });
  } catch {
    // not running (or no service command)
  }
  return { nginx: which('nginx'), squid: which('squid'), wrk: which('wrk') };
}

export function toolVersion(cmd, args) {
  // nginx -v prints on stderr, wrk -v exits 1: take the first non-empty line of either stream.
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const line = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '');
  return line?.trim() ?? null;
}

// ------------------------------------------------------------------------------------------------
// Processes

export const children = new Set();

export function startChild(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  child.benchName = name;
  child.stderrText = '';
  child.stderr?.on('data', (d) => {
    child.stderrText = (child.stderrText + d.toString()).slice(-4000);
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export async function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

export async function stopAll() {
  await Promise.all([...children].map((c) => stopChild(c)));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port, child, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}): ${child.stderrText}`);
    const ok = await new Promise((r) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms: ${child.stderrText}`);
}

/**
 * CPU seconds (user+system) of a process and all its descendants, from /proc; with `reaped`, also
 * the CPU of descendants that already exited and were waited for (cutime+cstime).
 */
export function treeCpuSeconds(pid, reaped = false) {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  const visit = (p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / tick; // utime, stime
      if (reaped) total += (Number(f[13]) + Number(f[14])) / tick; // cutime, cstime
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) visit(Number(k));
      }
    } catch {
      // process gone
    }
  };
  visit(pid);
  return total;
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineBusySeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + steal) / 100;
}

/**
 * Measures how much CPU the rest of the machine (anything not started by this bench) used while
 * `fn` ran, in cores: the bench shares a 2-core machine, so this flags noisy measurements.
 */
export async function withBackground(fn) {
  const t0 = Date.now();
  const busy0 = machineBusySeconds();
  const ours0 = treeCpuSeconds(process.pid, true);
  const r = await fn();
  const wall = (Date.now() - t0) / 1000;
  const foreign = machineBusySeconds() - busy0 - (treeCpuSeconds(process.pid, true) - ours0);
  r.backgroundCores = Math.max(0, Math.round((foreign / wall) * 100) / 100);
  return r;
}

// ------------------------------------------------------------------------------------------------
// Servers

/**
 * nginx upstream on 127.0.0.1:`port` (plain HTTP). With `opts.tls` ({port, certFile, keyFile}) the
 * same server block (same worker, same answer) also listens with TLS on `opts.tls.port`; with
 * `opts.statusPort`, a separate server there answers nginx's stub_status (connections accepted).
 * With `opts.uploadSink`, a POST to any path is answered 204 only once its whole body has been read
 * (nginx's proxy module buffers the body, then asks this same server for the 204): what
 * bench/fairness.mjs needs so that a slow upload holds its upstream connection until it ends.
 */
export async function startNginx(nginxBin, dir, port, opts = {}) {
  const d = path.join(dir, 'nginx');
  mkdirSync(path.join(d, 'tmp'), { recursive: true });
  const body = 'a'.repeat(CFG.bodyBytes - 1) + '\\n';
  const conf = `
worker_processes 1;
daemon off;
master_process on;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 65s;
  keepalive_requests 10000000;
  client_body_temp_path ${d}/tmp/body;
  proxy_temp_path ${d}/tmp/proxy;
  fastcgi_temp_path ${d}/tmp/fastcgi;
  uwsgi_temp_path ${d}/tmp/uwsgi;
  scgi_temp_path ${d}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};${
      opts.tls
        ? `
    listen 127.0.0.1:${opts.tls.port} ssl;
    ssl_certificate ${opts.tls.certFile};
    ssl_certificate_key ${opts.tls.keyFile};`
        : ''
    }
    location / {
      default_type text/plain;${
        opts.uploadSink
          ? `
      if ($request_method = POST) { rewrite ^ /__bench_upload last; }`
          : ''
      }
      return 200 "${body}";
    }${
      opts.uploadSink
        ? `
    location = /__bench_upload {
      internal;
      proxy_pass http://127.0.0.1:${port}/__bench_uploaded;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }
    location = /__bench_uploaded { return 204; }`
        : ''
    }
  }${
    opts.statusPort
      ? `
  server {
    listen 127.0.0.1:${opts.statusPort};
    location / { stub_status; }
  }`
      : ''
  }
}
`;
  writeFileSync(path.join(d, 'nginx.conf'), conf);
  const child = startChild('nginx', nginxBin, [
    '-p',
    d,
    '-c',
    path.join(d, 'nginx.conf'),
    '-e',
    path.join(d, 'error.log'),
  ]);
  await waitForPort(port, child, 'nginx');
  if (opts.tls) await waitForPort(opts.tls.port, child, 'nginx (TLS)');
  return child;
}

export async function startSquid(squidBin, dir, port, upstreamPort) {
  const d = path.join(dir, 'squid');
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'hosts'), `127.0.0.1 ${UPSTREAM_NAME}\n`);
  const conf = `
# Airlock bench: a forward proxy allowing exactly GET to ${UPSTREAM_NAME}:${upstreamPort}, no cache.
http_port 127.0.0.1:${port}
visible_hostname airlock-bench
workers 1
pid_filename ${d}/squid.pid
cache_log ${d}/cache.log
coredump_dir ${d}
${CFG.squidAccessLog ? `access_log stdio:${d}/access.log squid` : 'access_log none'}
cache deny all
cache_mem 8 MB
hosts_file ${d}/hosts
# Only loopback: any name not in hosts_file would be asked of 127.0.0.1, where no DNS server is.
dns_nameservers 127.0.0.1
acl bench_host dstdomain ${UPSTREAM_NAME}
acl bench_port port ${upstreamPort}
acl bench_method method GET
http_access allow bench_host bench_port bench_method
http_access deny all
client_persistent_connections on
server_persistent_connections on
shutdown_lifetime 0 seconds
pinger_enable off
max_filedescriptors 8192
`;
  writeFileSync(path.join(d, 'squid.conf'), conf);
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'proxy:proxy', d]);
  const child = startChild('squid', squidBin, ['-N', '-n', 'airlockbench', '-f', path.join(d, 'squid.conf')]);
  await waitForPort(port, child, 'squid', 15_000);
  return child;
}

/**
 * The Airlock gateway in its own process (bench/gateway-child.mjs). `opts.config` is merged into the
 * gateway service config (e.g. caDir, upstreamCaPem, more hostAliases); `opts.policyLines` are
 * appended to the bench policy. `opts.sessions` registers more sessions next to SESSION
 * ([{id, role, address, cred}], e.g. a second one at 127.0.0.2); `opts.dist` runs another compiled
 * tree than BENCH_DIST / ./dist for this gateway only.
 */
export async function startGateway(dir, upstreamPort, opts = {}) {
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir, { recursive: true });
  writeFileSync(path.join(policyDir, 'model.conf'), readFileSync(path.join(ROOT, 'policies', 'model.conf')));
  const up = `${UPSTREAM_NAME}:${upstreamPort}`;
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      '# Airlock bench policy: role "bench" may GET /payload on the upstream and nothing else there.',
      'p, base, config.test:2379, /v3/auth/*, *, deny',
      'p, base, config.test:2379, /v3/kv/put, *, deny',
      'p, base, config.test:2379, /v3/kv/deleterange, *, deny',
      'g, bench, base',
      `p, bench, ${up}, /payload, GET, allow`,
      `p, bench, ${up}, /admin/*, *, deny`,
      'p, analyst, forum.test:3000, /*, GET, allow',
      ...(opts.policyLines ?? []),
      '',
    ].join('\n'),
  );
  const auditFile = path.join(dir, 'audit', 'audit.jsonl');
  const gwCfg = {
    port: 0,
    adminPort: 0,
    listenHost: '127.0.0.1',
    policyDir,
    auditFile,
    auditStdout: false,
    allowPrivateCidrs: ['127.0.0.0/8'],
    ...opts.config,
    hostAliases: { [UPSTREAM_NAME]: '127.0.0.1', ...opts.config?.hostAliases },
  };
  const session = {
    id: SESSION.id,
    role: SESSION.role,
    address: '127.0.0.1',
    credentialSha256: createHash('sha256').update(SESSION.cred).digest('hex'),
    expiresAtMs: Date.now() + 3_600_000,
  };
  const nodeArgs = [
    ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean),
    ...(opts.nodeArgs ?? []),
  ];
  const child = startChild(
    `airlock-gateway${opts.config?.workers > 1 ? `-${opts.config.workers}w` : ''}`,
    process.execPath,
    [...nodeArgs, path.join(BENCH_DIR, 'gateway-child.mjs')],
    {
      env: {
        ...process.env,
        BENCH_GATEWAY_CONFIG: JSON.stringify(gwCfg),
        BENCH_SESSION: JSON.stringify(session),
        ...(opts.sessions
          ? {
              BENCH_SESSIONS: JSON.stringify(
                opts.sessions.map((x) => ({
                  id: x.id,
                  role: x.role,
                  address: x.address,
                  credentialSha256: createHash('sha256').update(x.cred).digest('hex'),
                  expiresAtMs: session.expiresAtMs,
                })),
              ),
            }
          : {}),
        ...(opts.dist ? { BENCH_DIST: opts.dist } : {}),
        // Cluster scheduling of a multi-worker gateway: rr (Node's default on Linux) or none.
        ...(opts.sched ? { NODE_CLUSTER_SCHED_POLICY: opts.sched } : {}),
      },
    },
  );
  const ready = await new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`gateway not ready: ${child.stderrText}`)), 15_000);
    child.stdout.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}): ${child.stderrText}`)));
  });
  return { child, ...ready, auditFile };
}

// ------------------------------------------------------------------------------------------------
// Measurements

export function get(port, target, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, headers, agent: false }, (res) => {
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve({ status: res.statusCode, bytes: n, headers: res.headers }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}

export function runWrk(wrkBin, p, seconds) {
  const args = [
    `-t${CFG.wrkThreads}`,
    `-c${CFG.connections}`,
    `-d${seconds}s`,
    '--timeout',
    '2s',
    '-s',
    path.join(BENCH_DIR, 'wrk-proxy.lua'),
    // p.connectHost: where TCP goes (another loopback address, bench/workers.mjs); 127.0.0.1 by default.
    `http://${p.connectHost ?? '127.0.0.1'}:${p.port}/`,
  ];
  return new Promise((resolve, reject) => {
    const child = startChild(`wrk ${p.name}`, wrkBin, args, {
      env: { ...process.env, BENCH_TARGET: p.target, BENCH_HOST: p.host, BENCH_AUTH: p.auth ?? '' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d.toString()));
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
      if (code !== 0 || !line)
        return reject(new Error(`wrk ${p.name} failed (${code}): ${out}${child.stderrText}`));
      const r = JSON.parse(line.slice('BENCH_JSON '.length));
      const m = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      r.non2xx = m ? Number(m[1]) : 0;
      r.rps = Math.round((r.requests / r.durationUs) * 1e6);
      resolve(r);
    });
  });
}

/**
 * Runs bench/rate-client.mjs against path `p`. Options: warmupSeconds, seconds, samples, rate,
 * connections, localAddress (source address of the client's connections, e.g. 127.0.0.2 for a
 * second session), and onWarm (the client waits after its warm-up until onWarm's promise resolves,
 * so the caller can set something up between warm-up and measurement).
 */
export function runRate(p, opts = {}) {
  const spec = {
    origin: `http://127.0.0.1:${p.port}`,
    path: p.target,
    headers: { host: p.host, ...(p.auth ? { 'proxy-authorization': p.auth } : {}) },
    rate: opts.rate ?? CFG.rate,
    warmupMs: (opts.warmupSeconds ?? CFG.warmupSeconds) * 1000,
    durationMs: (opts.seconds ?? CFG.rateSeconds) * 1000,
    connections: opts.connections ?? CFG.rateConnections,
    expectBytes: CFG.bodyBytes,
    samples: opts.samples ?? false,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    ...(opts.onWarm ? { waitAfterWarmup: true } : {}),
  };
  return new Promise((resolve, reject) => {
    const child = startChild(`rate ${p.name}`, process.execPath, [
      path.join(BENCH_DIR, 'rate-client.mjs'),
      JSON.stringify(spec),
    ]);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d.toString();
      if (opts.onWarm && out.startsWith('warm\n')) {
        out = out.slice('warm\n'.length);
        const onWarm = opts.onWarm;
        opts = { ...opts, onWarm: null };
        Promise.resolve(onWarm()).then(
          () => child.stdin.write('go\n'),
          (err) => {
            child.kill();
            reject(err);
          },
        );
      }
    });
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`rate client ${p.name} failed (${code}): ${child.stderrText}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

/** Exact percentiles (nearest rank) of the first `n` values of a Float64Array, in the same unit. */
export function percentiles(samples, n) {
  const a = samples.subarray(0, n).sort();
  const at = (q) => (n === 0 ? null : a[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i];
  const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    count: n,
    mean: r3(n ? sum / n : null),
    p50: r3(at(0.5)),
    p90: r3(at(0.9)),
    p99: r3(at(0.99)),
    p999: r3(at(0.999)),
    max: r3(n ? a[n - 1] : null),
  };
}
