import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';

/** Where the CLI's client commands find the API: flag > AIRLOCK_API_URL > default. */
export function apiUrl(flag?: string): string {
  return (flag ?? process.env.AIRLOCK_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
}

/** Token: AIRLOCK_API_TOKEN > the token file `airlock serve` wrote into its state dir. */
export function apiToken(stateDir = '.airlock'): string {
  const env = process.env.AIRLOCK_API_TOKEN;
  if (env) return env;
  const file = path.resolve(stateDir, 'api-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CliError(
    `no API token: set AIRLOCK_API_TOKEN or run from the directory where "airlock serve" runs`,
  );
}

/** An error the CLI prints as one line and turns into exit code `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Minimal JSON client for the sandbox API; problem+json errors become CliError with their detail. */
export class ApiClient {
  constructor(
    readonly base: string,
    private readonly token: string,
  ) {}

  async call<T>(method: 'GET' | 'POST' | 'DELETE', p: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(this.base + p, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new CliError(`cannot reach the Airlock API at ${this.base}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let detail = text;
      try {
        const pj = JSON.parse(text) as { detail?: string; code?: string };
        detail = `${pj.detail ?? text}${pj.code ? ` (${pj.code})` : ''}`;
      } catch {
        // not JSON: keep the text
      }
      throw new CliError(`${method} ${p}: ${res.statusCode} ${detail}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Runs a command with live output (`stream: true`, NDJSON) and returns its exit code.
   * @throws CliError when the API refuses the call or the command cannot run.
   */
  async execStream(
    id: string,
    command: string[],
    timeoutSeconds: number,
    onOutput: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<number> {
    const res = await request(`${this.base}/v1/sessions/${id}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command, timeoutSeconds, stream: true }),
      bodyTimeout: 0,
      headersTimeout: 0,
    }).catch((err: unknown) => {
      throw new CliError(`cannot reach the Airlock API at ${this.base}: ${(err as Error).message}`);
    });
    if (res.statusCode >= 400) throw new CliError(`exec: ${res.statusCode} ${await res.body.text()}`);
    let buffered = '';
    let exitCode: number | null = null;
    const handle = (line: string): void => {
      if (!line) return;
      const msg = JSON.parse(line) as {
        stream?: 'stdout' | 'stderr';
        data?: string;
        exitCode?: number;
        error?: string;
        detail?: string;
      };
      if (msg.stream && msg.data !== undefined) onOutput(msg.stream, msg.data);
      else if (msg.exitCode !== undefined) exitCode = msg.exitCode;
      else if (msg.error) throw new CliError(`exec: ${msg.detail ?? msg.error} (${msg.error})`);
    };
    res.body.setEncoding('utf8'); // decodes code points split across chunks
    for await (const chunk of res.body) {
      buffered += chunk as string;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        handle(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
    handle(buffered);
    if (exitCode === null) throw new CliError('exec: the stream ended without an exit code');
    return exitCode;
  }
}
