/**
 * Load client of the HTTPS interception benchmark (bench/tls/run.mjs), in its own process; prints one
 * JSON object on stdout. The same undici client serves every path, so the comparison is fair:
 *   - direct:  an undici Pool to nginx (TLS verified against the upstream's test CA for https);
 *   - proxy:   an undici ProxyAgent to the Airlock gateway (Proxy-Authorization = the session
 *              credential); https is a CONNECT tunnel whose TLS the gateway terminates (the client
 *              verifies the gateway's leaf against the Airlock CA), http is absolute-form
 *              (`proxyTunnel: false`).
 *
 * argv[2]: JSON {mode, path, target, expectBytes, connections, warmupMs, durationMs, rate, ...}
 *   path: {name, kind: 'direct'|'proxy', origin: 'https://upstream.test:PORT', port (TCP: nginx or
 *         gateway), auth?, ca?}
 * Modes:
 *   check      GET each of `targets` once; status, bytes and x-airlock-decision of each
 *   sat        closed loop, `connections` requests in flight, for warmupMs then durationMs: req/s
 *   rate       open loop at `rate` req/s (fixed send instants, as bench/rate-client.mjs) over
 *              `connections` keep-alive connections opened before the warm-up: latency samples
 *   handshake  `count` new tunnels one after the other (raw sockets, no connection reuse, no TLS
 *              session resumption), to hosts[i]: TCP connect, CONNECT -> 200 (the gateway mints or
 *              finds the leaf before it answers), TLS handshake, then one GET on the fresh tunnel
 *              (unless `request: false`)
 */
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { Pool, ProxyAgent } from 'undici';
import { percentiles } from '../lib.mjs';

const o = JSON.parse(process.argv[2]);
const p = o.path;
const url = new URL(p.origin);
const https = url.protocol === 'https:';

// New connections (direct: to nginx; proxy: to the gateway, tunnels included) while measuring.
let connections = 0;
diagnostics.subscribe('undici:client:connected', () => connections++);

function makeDispatcher() {
  const common = { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000 };
  if (p.kind === 'direct') {
    const origin = `${url.protocol}//127.0.0.1:${p.port}`;
    const connect = https ? { connect: { ca: p.ca, servername: url.hostname } } : {};
    return { dispatcher: new Pool(origin, { ...common, ...connect }), origin };
  }
  const dispatcher = new ProxyAgent({
    uri: `http://127.0.0.1:${p.port}`,
    token: p.auth,
    proxyTunnel: false,
    ...common,
    ...(https ? { requestTls: { ca: p.ca, servername: url.hostname } } : {}),
    factory: (origin, opts) => new Pool(origin, { ...opts, ...common }),
  });
  return { dispatcher, origin: p.origin };
}

/** One GET; resolves {status, bytes, decision, ms}, never rejects. */
async function get(d, target) {
  const start = performance.now();
  try {
    const res = await d.dispatcher.request({
      origin: d.origin,
      path: target,
      method: 'GET',
      headers: { host: url.host },
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return {
      status: res.statusCode,
      bytes: body.length,
      decision: res.headers['x-airlock-decision'] ?? null,
      ms: performance.now() - start,
    };
  } catch (err) {
    return { status: 0, bytes: 0, error: String(err?.cause?.message ?? err?.message ?? err), ms: 0 };
  }
}
/** Tells the orchestrator (stdout line) where the measured part starts and ends: it reads CPU then. */
const mark = (what) => process.stdout.write(`MARK ${what}\n`);
const good = (r) => r.status === 200 && (!o.expectBytes || r.bytes === o.expectBytes);

async function check() {
  const d = makeDispatcher();
  const out = [];
  for (const t of o.targets) out.push({ target: t, ...(await get(d, t)) });
  await d.dispatcher.close();
  return { results: out };
}

async function sat() {
  const d = makeDispatcher();
  const loop = async (ms, lat) => {
    const end = performance.now() + ms;
    let ok = 0;
    let failed = 0;
    const worker = async () => {
      while (performance.now() < end) {
        const r = await get(d, o.target);
        if (good(r)) {
          ok++;
          lat?.push(r.ms);
        } else failed++;
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: o.connections }, worker));
    return { ok, failed, seconds: (performance.now() - t0) / 1000 };
  };
  const warm = await loop(o.warmupMs, null);
  const conn0 = connections;
  const cpu0 = process.cpuUsage();
  const lat = [];
  mark('start');
  const r = await loop(o.durationMs, lat);
  mark('end');
  const cpu = process.cpuUsage(cpu0);
  await d.dispatcher.close();
  return {
    requests: r.ok,
    warmupRequests: warm.ok,
    failed: r.failed,
    seconds: Math.round(r.seconds * 1000) / 1000,
    rps: Math.round(r.ok / r.seconds),
    latencyMs: percentiles(Float64Array.from(lat), lat.length),
    clientCores: Math.round(((cpu.user + cpu.system) / 1e6 / r.seconds) * 100) / 100,
    newConnections: connections - conn0,
  };
}

async function rate() {
  const d = makeDispatcher();
  // Open the keep-alive connections (tunnels) first: the measured requests then run inside them.
  await Promise.all(Array.from({ length: o.connections }, () => get(d, o.target)));
  const interval = 1000 / o.rate;
  const phase = (durationMs) => {
    const total = Math.round((durationMs / 1000) * o.rate);
    const lat = new Float64Array(total);
    const corr = new Float64Array(total);
    let sent = 0;
    let done = 0;
    let ok = 0;
    let failed = 0;
    return new Promise((resolve) => {
      const t0 = performance.now() + 5;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(guard);
        resolve({ total, sent, ok, failed, lat, corr, elapsedMs: performance.now() - t0 });
      };
      const guard = setTimeout(finish, durationMs + 5_000);
      const fire = (intended) => {
        sent++;
        void get(d, o.target).then((r) => {
          if (good(r)) {
            lat[ok] = r.ms;
            corr[ok] = performance.now() - intended;
            ok++;
          } else failed++;
          if (++done === total) finish();
        });
      };
      const tick = () => {
        const now = performance.now();
        while (sent < total && t0 + sent * interval <= now) fire(t0 + sent * interval);
        if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()));
      };
      setTimeout(tick, 5);
    });
  };
  await phase(o.warmupMs);
  const conn0 = connections;
  mark('start');
  const r = await phase(o.durationMs);
  mark('end');
  const newConnections = connections - conn0;
  await d.dispatcher.close();
  const round3 = (x) => Math.round(x * 1000) / 1000;
  return {
    rate: o.rate,
    scheduled: r.total,
    sent: r.sent,
    ok: r.ok,
    failed: r.failed,
    achievedRate: Math.round((r.sent / r.elapsedMs) * 10_000) / 10,
    newConnections,
    latencyMs: percentiles(r.lat.slice(), r.ok),
    correctedLatencyMs: percentiles(r.corr.slice(), r.ok),
    samples: { latencyMs: Array.from(r.lat.subarray(0, r.ok), round3) },
  };
}

/** Reads from `socket` until `done(buffer)` is true; rejects on close/error/timeout. */
function readUntil(socket, done, timeoutMs = 5_000) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => fail(new Error('timeout')), timeoutMs);
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      if (done(buf)) {
        cleanup();
        resolve(buf);
      }
    };
    const fail = (err) => {
      cleanup();
      reject(err ?? new Error('closed'));
    };
    const onClose = () => fail(new Error(`closed after ${buf.length} bytes`));
    const cleanup = () => {
      clearTimeout(t);
      socket.off('data', onData);
      socket.off('error', fail);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('error', fail);
    socket.once('close', onClose);
  });
}

/** A complete HTTP/1.1 response with Content-Length (what nginx and the gateway send here). */
function fullResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString('latin1'));
  return buf.length >= end + 4 + Number(m?.[1] ?? 0);
}

async function oneTunnel(host, secureContext) {
  const port = Number(url.port);
  const t0 = performance.now();
  const socket = net.connect({ host: '127.0.0.1', port: p.port, noDelay: true });
  try {
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const t1 = performance.now();
    let t2 = t1;
    if (p.kind === 'proxy') {
      socket.write(
        `CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\nProxy-Authorization: ${p.auth}\r\n\r\n`,
      );
      const head = await readUntil(socket, (b) => b.includes('\r\n\r\n'));
      if (!head.toString('latin1').startsWith('HTTP/1.1 200')) {
        throw new Error(`CONNECT ${host}: ${head.toString('latin1').split('\r\n')[0]}`);
      }
      t2 = performance.now();
    }
    const tlsSocket = tls.connect({ socket, servername: host, secureContext, ALPNProtocols: ['http/1.1'] });
    await new Promise((resolve, reject) => {
      tlsSocket.once('secureConnect', resolve);
      tlsSocket.once('error', reject);
    });
    const t3 = performance.now();
    if (o.request === false) {
      tlsSocket.destroy();
      return { tcp: t1 - t0, connect: t2 - t1, tls: t3 - t2, tunnel: t3 - t0, firstRequest: 0 };
    }
    tlsSocket.write(`GET ${o.target} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
    const res = await readUntil(tlsSocket, fullResponse);
    const t4 = performance.now();
    const status = res.toString('latin1', 9, 12);
    if (status !== '200') throw new Error(`GET in tunnel to ${host}: ${status}`);
    tlsSocket.destroy();
    return { tcp: t1 - t0, connect: t2 - t1, tls: t3 - t2, tunnel: t3 - t0, firstRequest: t4 - t3 };
  } finally {
    socket.destroy();
  }
}

async function handshake() {
  const secureContext = tls.createSecureContext({ ca: p.ca });
  for (let i = 0; i < (o.warmup ?? 0); i++) await oneTunnel(o.hosts[0], secureContext);
  const keys = ['tcp', 'connect', 'tls', 'tunnel', 'firstRequest'];
  const samples = Object.fromEntries(keys.map((k) => [k, []]));
  let failed = 0;
  let lastError = null;
  const deadline = performance.now() + o.maxMs;
  const t0 = performance.now();
  let n = 0;
  mark('start');
  for (; n < o.count && performance.now() < deadline; n++) {
    try {
      const r = await oneTunnel(o.hosts[n % o.hosts.length], secureContext);
      for (const k of keys) samples[k].push(Math.round(r[k] * 1000) / 1000);
    } catch (err) {
      failed++;
      lastError = String(err?.message ?? err);
    }
  }
  mark('end');
  return {
    attempted: n,
    failed,
    lastError,
    seconds: Math.round(performance.now() - t0) / 1000,
    samples,
  };
}

const modes = { check, sat, rate, handshake };
const out = await modes[o.mode]();
process.stdout.write(JSON.stringify(out) + '\n');
