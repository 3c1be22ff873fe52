/**
 * The control plane's internal endpoint for gateways: `POST /internal/v1/approvals/claim`
 * (src/gateway-wire/approvals.ts), bearer = the gateway admin token. Docker: a unix socket in
 * `<stateDir>/control`, mounted into the gateway container only (no sandbox can reach it); Kubernetes:
 * `approvals.internalListen` on the controller, reached by the gateway Pods.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { claimRequestSchema } from '../gateway-wire/approvals.js';
import type { ApprovalService } from './approvals.js';

/** Largest claim body accepted, bytes (the preview is at most ~5.5 KiB of base64). */
const MAX_CLAIM_BYTES = 64 * 1024;

/** Where the endpoint listens. */
export type ApprovalsListen = { socketPath: string } | { host: string; port: number };

function sameToken(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Starts the endpoint.
 * @param token the gateway admin token (claims without it are answered 401).
 * @returns the server, listening; `close()` it on shutdown.
 * @throws Error when it cannot listen (socket path in use by another process, port taken).
 */
export async function startApprovalsServer(
  service: ApprovalService,
  token: string,
  listen: ApprovalsListen,
  logger?: Logger,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/internal/v1/approvals/claim') {
      return send(res, 404, { error: 'not_found' });
    }
    if (!sameToken(req.headers.authorization, token)) return send(res, 401, { error: 'unauthorized' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CLAIM_BYTES) {
        send(res, 413, { error: 'too_large' });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let parsed;
      try {
        parsed = claimRequestSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        return send(res, 400, { error: 'bad_request', detail: 'body is not JSON' });
      }
      if (!parsed.success) return send(res, 400, { error: 'bad_request', detail: parsed.error.message });
      service.claim(parsed.data).then(
        (answer) => send(res, 200, answer),
        (err: unknown) => {
          logger?.error({ err }, 'approval claim failed');
          send(res, 500, { error: 'internal' });
        },
      );
    });
  });
  server.requestTimeout = 0; // hold mode: a claim may wait up to 10 minutes
  server.headersTimeout = 10_000;
  if ('socketPath' in listen) {
    mkdirSync(path.dirname(listen.socketPath), { recursive: true, mode: 0o755 });
    rmSync(listen.socketPath, { force: true }); // a socket left by a previous run
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.socketPath, () => resolve());
    });
    // The gateway runs as another user; the directory is mounted into its container only.
    chmodSync(listen.socketPath, 0o666);
  } else {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
  }
  return server;
}
