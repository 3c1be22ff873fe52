/**
 * Real TLS upstreams for tests: nginx (Debian) terminating TLS with certificates of a test CA, in
 * front of json-server, and serving git over HTTPS through git-http-backend (fcgiwrap). Certificates
 * are made here: a valid one, an expired one and one for the wrong name, so the gateway's upstream
 * verification can be exercised. Everything listens on one address (loopback or the egress bridge).
 */
import 'reflect-metadata';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { freePort } from './upstreams.js';

const run = promisify(execFile);
x509.cryptoProvider.set(webcrypto as never);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

function pemKey(der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

/** A test CA and server certificates (PEM). */
export async function makeTestPki(): Promise<{
  caPem: string;
  issue(name: string, opts?: { expired?: boolean }): Promise<{ cert: string; key: string }>;
}> {
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=Airlock test upstream CA',
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 30 * DAY),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  return {
    caPem: ca.toString('pem') + '\n',
    async issue(name, opts = {}) {
      const keys = (await webcrypto.subtle.generateKey(ALG, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const now = Date.now();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomBytes(8)
          .toString('hex')
          .replace(/^[89a-f]/, '1'),
        subject: `CN=${name}`,
        issuer: ca.subject,
        notBefore: new Date(opts.expired ? now - 10 * DAY : now - DAY),
        notAfter: new Date(opts.expired ? now - DAY : now + 10 * DAY),
        signingAlgorithm: ALG,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        ],
      });
      return {
        cert: cert.toString('pem') + '\n',
        key: pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
      };
    },
  };
}

export interface TlsUpstreams {
  host: string;
  /** nginx ports: `secure.test` (valid), `expired.test` (expired cert), `wrongname.test` (cert for another name). */
  ports: { secure: number; expired: number; wrongName: number };
  /** PEM of the CA that signed the upstream certificates. */
  caPem: string;
  caFile: string;
  /** Bare git repository served at https://secure.test:PORT/git/repo.git */
  repoDir: string;
  /** Commit ids of refs/heads/main in the served repository. */
  head(): Promise<string>;
  stop(): Promise<void>;
}

function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 3_000).unref();
  });
}

/**
 * Starts nginx on `host` with three TLS servers, proxying `/` to `jsonServerUrl` and serving
 * `/git/` through git-http-backend (push enabled on the server side, so only Airlock can refuse it).
 * Fixed ports may be given (e2e policies name them). `opts.plainGitPort`: also serve `/git/` over
 * plain http on that port (for clients that cannot resolve the TLS servers' names).
 */
export async function startTlsUpstreams(
  host: string,
  jsonServerUrl: string,
  fixed?: { secure: number; expired: number; wrongName: number },
  opts: { plainGitPort?: number } = {},
): Promise<TlsUpstreams> {
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-nginx-'));
  const pki = await makeTestPki();
  const certs = {
    secure: await pki.issue('secure.test'),
    expired: await pki.issue('expired.test', { expired: true }),
    wrongName: await pki.issue('someone-else.test'),
  };
  for (const [k, v] of Object.entries(certs)) {
    writeFileSync(path.join(dir, `${k}.crt`), v.cert);
    writeFileSync(path.join(dir, `${k}.key`), v.key, { mode: 0o600 });
  }
  const caFile = path.join(dir, 'upstream-ca.pem');
  writeFileSync(caFile, pki.caPem);

  // A bare repository with one commit on main.
  const repoDir = path.join(dir, 'git', 'repo.git');
  const work = path.join(dir, 'work');
  mkdirSync(work, { recursive: true });
  const git = (cwd: string, ...args: string[]) =>
    run('git', args, {
      cwd,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@t',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@t',
      },
    });
  await run('git', ['init', '-q', '--bare', '-b', 'main', repoDir]);
  await git(repoDir, 'config', 'http.receivepack', 'true');
  await run('git', ['init', '-q', '-b', 'main', work]);
  writeFileSync(path.join(work, 'README'), 'runbook: never open port 22 to everyone\n');
  await git(work, 'add', 'README');
  await git(work, 'commit', '-q', '-m', 'initial');
  await git(work, 'push', '-q', repoDir, 'main');

  const sock = path.join(dir, 'fcgiwrap.sock');
  const fcgi = spawn('fcgiwrap', ['-s', `unix:${sock}`], { stdio: 'ignore' });
  const ports = fixed ?? {
    secure: await freePort(host),
    expired: await freePort(host),
    wrongName: await freePort(host),
  };
  const gitLocation = `
    location ~ ^/git(/.*)$ {
      client_max_body_size 0;
      fastcgi_pass unix:${sock};
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT ${path.join(dir, 'git')};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param REMOTE_USER tester;
    }`;
  const plainGit = opts.plainGitPort ? `server { listen ${host}:${opts.plainGitPort}; ${gitLocation} }` : '';
  const server = (port: number, name: string, cert: string) => `
  server {
    listen ${host}:${port} ssl;
    server_name ${name};
    ssl_certificate ${path.join(dir, cert + '.crt')};
    ssl_certificate_key ${path.join(dir, cert + '.key')};
    location ~ ^/git(/.*)$ {
      client_max_body_size 0;
      fastcgi_pass unix:${sock};
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT ${path.join(dir, 'git')};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param REMOTE_USER tester;
    }
    location / { proxy_pass ${jsonServerUrl}; proxy_set_header Host $host; }
  }`;
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  ${server(ports.secure, 'secure.test', 'secure')}
  ${server(ports.expired, 'expired.test', 'expired')}
  ${server(ports.wrongName, 'wrongname.test', 'wrongName')}
  ${plainGit}
}
`,
  );
  const nginx = spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await run('curl', [
        '-s',
        '-o',
        '/dev/null',
        '--cacert',
        caFile,
        '--resolve',
        `secure.test:${ports.secure}:${host}`,
        `https://secure.test:${ports.secure}/posts/1`,
      ]);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    host,
    ports,
    caPem: pki.caPem,
    caFile,
    repoDir,
    async head() {
      return (await run('git', ['rev-parse', 'refs/heads/main'], { cwd: repoDir })).stdout.trim();
    },
    async stop() {
      await Promise.all([stop(nginx), stop(fcgi)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
