/** A forward-proxy client for tests: absolute-form requests over node:http, from a chosen source address. */
import http from 'node:http';
import net from 'node:net';

export interface ProxyTarget {
  host: string;
  port: number;
}

export interface ProxyResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

export interface ProxyRequestOptions {
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  /** `sessionId:credential`, sent as Proxy-Authorization Basic; omit to send none. */
  auth?: string;
  /** Source address (e.g. 127.0.0.2) so tests can act as different sandboxes. */
  localAddress?: string;
  agent?: http.Agent;
}

export function proxyRequest(
  proxy: ProxyTarget,
  url: string,
  opts: ProxyRequestOptions = {},
): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { host: u.host, ...opts.headers };
    if (opts.auth) headers['proxy-authorization'] = 'Basic ' + Buffer.from(opts.auth).toString('base64');
    if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const req = http.request({
      host: proxy.host,
      port: proxy.port,
      method: opts.method ?? 'GET',
      path: url,
      headers,
      localAddress: opts.localAddress,
      agent: opts.agent ?? false,
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', reject);
      res.once('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
    });
    req.end(opts.body);
  });
}

/** Sends raw bytes and returns everything the server answers until it closes or `timeoutMs` passes. */
export function rawExchange(
  proxy: ProxyTarget,
  bytes: string,
  localAddress?: string,
  timeoutMs = 3_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host, port: proxy.port, localAddress });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('error', reject);
    s.once('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.setTimeout(timeoutMs, () => s.destroy());
    s.write(bytes);
  });
}
