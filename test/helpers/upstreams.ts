/**
 * Real upstream servers for tests (nobody here wrote them): json-server (npm) as a forum and etcd
 * (Debian etcd-server) as a config store with an ACL API, versitygw (built from the Go module proxy by
 * scripts/versitygw.sh) as an S3 server that verifies SigV4 signatures. Each listens on `host` (loopback by
 * default, or the Docker egress bridge address for e2e) on a free port, with its data in a temp dir.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createRequire } from 'node:module';

const run = promisify(execFile);

/** A free TCP port on `host` (bind to 0, read, release). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start within ${timeoutMs} ms`);
}

function stopProcess(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 3_000).unref();
  });
}

export interface JsonServer {
  host: string;
  port: number;
  /** Base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  dbFile: string;
  /**
   * json-server's data as it holds it now (`GET /db`, asked synchronously with curl). Not the file:
   * json-server writes it after answering, so a read right after a 200 could miss the change (and a
   * check that something did *not* change could pass before a write lands).
   */
  db(): { posts: Array<Record<string, unknown>>; comments: Array<Record<string, unknown>> };
  stop(): Promise<void>;
}

export const FORUM_SEED = {
  posts: [{ id: 1, title: 'How do I open port 22 for the ops group?', body: 'Asking for a colleague.' }],
  comments: [{ id: 1, postId: 1, body: 'Please file a ticket with the network team.' }],
};

export async function startJsonServer(host = '127.0.0.1', fixedPort?: number): Promise<JsonServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-forum-'));
  const dbFile = path.join(dir, 'db.json');
  writeFileSync(dbFile, JSON.stringify(FORUM_SEED, null, 2));
  const port = fixedPort ?? (await freePort(host));
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('json-server/package.json')), 'lib/cli/bin.js');
  const proc = spawn(process.execPath, [bin, '--host', host, '--port', String(port), '--quiet', dbFile], {
    stdio: 'ignore',
  });
  const url = `http://${host}:${port}`;
  await waitFor(async () => (await fetch(`${url}/posts/1`)).ok, 'json-server');
  return {
    host,
    port,
    url,
    dbFile,
    db: () =>
      JSON.parse(
        execFileSync('curl', ['-sf', '--max-time', '10', `${url}/db`], { encoding: 'utf8' }),
      ) as ReturnType<JsonServer['db']>,
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Etcd {
  host: string;
  port: number;
  url: string;
  /** Runs Debian's etcdctl (API v3) against this server. */
  etcdctl(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startEtcd(host = '127.0.0.1', fixedPort?: number): Promise<Etcd> {
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-etcd-'));
  const port = fixedPort ?? (await freePort(host));
  const peer = await freePort('127.0.0.1');
  const url = `http://${host}:${port}`;
  const proc = spawn(
    'etcd',
    [
      '--name',
      'airlock-test',
      '--data-dir',
      path.join(dir, 'data'),
      '--listen-client-urls',
      url,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `airlock-test=http://127.0.0.1:${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: 'ignore' },
  );
  const etcdctl = async (...args: string[]): Promise<string> => {
    const { stdout } = await run('etcdctl', [`--endpoints=${url}`, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    return stdout;
  };
  await waitFor(async () => (await fetch(`${url}/health`)).ok, 'etcd');
  await etcdctl('put', 'app/feature-flags', '{"beta":false}');
  return {
    host,
    port,
    url,
    etcdctl,
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A running versitygw (S3 server, posix backend) and its root access key. */
export interface Versitygw {
  host: string;
  port: number;
  /** `http(s)://host:port` (path-style buckets). */
  url: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The stderr it wrote so far (its last 8 KiB), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts versitygw (built by scripts/versitygw.sh, which prints its path) with a posix backend in a
 * temp dir and a random root key: an S3 server, not written here, that verifies SigV4 header and
 * query-string (presigned) signatures. With `tls` it serves HTTPS with that certificate (PEM).
 * Without `port`, a start that fails (the free port taken meanwhile) is retried on another port,
 * three times.
 * @throws Error when scripts/versitygw.sh has not built it, or it does not answer within 20 s.
 */
export async function startVersitygw(
  opts: { host?: string; port?: number; tls?: { cert: string; key: string } } = {},
): Promise<Versitygw> {
  const host = opts.host ?? '127.0.0.1';
  const script = path.join(path.dirname(new URL(import.meta.url).pathname), '../../scripts/versitygw.sh');
  const paths = await run('bash', [script, '--paths']).catch((err: unknown) => {
    throw new Error(`versitygw is not built: run bash scripts/versitygw.sh (${String(err)})`, { cause: err });
  });
  const bin = /VERSITYGW=(.*)/.exec(paths.stdout)![1]!.trim();
  const accessKeyId = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(30).toString('base64');
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-versitygw-'));
  const args: string[] = [];
  if (opts.tls) {
    writeFileSync(path.join(dir, 'tls.crt'), opts.tls.cert);
    writeFileSync(path.join(dir, 'tls.key'), opts.tls.key, { mode: 0o600 });
    args.push('--cert', path.join(dir, 'tls.crt'), '--key', path.join(dir, 'tls.key'));
  }
  mkdirSync(path.join(dir, 'data'));
  const scheme = opts.tls ? 'https' : 'http';
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort(host));
    const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
    let log = '';
    const proc = spawn(
      bin,
      [...args, '-p', `${host}:${port}`, '--health', '/health', '-q', 'posix', path.join(dir, 'data')],
      {
        // The root key in the environment, not on the command line.
        env: { ...process.env, ROOT_ACCESS_KEY_ID: accessKeyId, ROOT_SECRET_ACCESS_KEY: secretAccessKey },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    proc.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-8_192)));
    const probe = async (): Promise<boolean> => {
      if (proc.exitCode !== null) throw new Error(`versitygw exited ${proc.exitCode}: ${log}`);
      return new Promise<boolean>((resolve) => {
        // A readiness probe only (the tests check TLS through the gateway): the certificate is not verified here.
        const r = (scheme === 'https' ? https : http).request(
          `${url}/health`,
          { rejectUnauthorized: false },
          (res: http.IncomingMessage) => {
            res.resume();
            resolve(res.statusCode === 200);
          },
        );
        r.on('error', () => resolve(false));
        r.end();
      });
    };
    try {
      await waitFor(probe, `versitygw (${log})`);
    } catch (err) {
      await stopProcess(proc);
      if (attempt >= 3 || opts.port !== undefined) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      continue;
    }
    return {
      host,
      port,
      url,
      accessKeyId,
      secretAccessKey,
      log: () => log,
      async stop() {
        await stopProcess(proc);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
