import type { StreamEvent } from './types.js';

/** Where the tab keeps the API token (cleared when the tab closes; never put in a URL). */
const TOKEN_KEY = 'airlock.token';

export const tokenStore = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string): void => sessionStorage.setItem(TOKEN_KEY, t),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

/** An API answer that was not 2xx: its status and the problem's detail. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function problemOf(res: Response): Promise<ApiError> {
  let detail = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { detail?: string; code?: string };
    if (body.detail) detail = `${body.code ?? res.status}: ${body.detail}`;
  } catch {
    // not a problem+json body
  }
  return new ApiError(res.status, detail);
}

/**
 * Calls the API with the token in the Authorization header (and `body` as JSON when given).
 * @throws ApiError on a non-2xx answer
 */
export async function call(token: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw await problemOf(res);
  return res.status === 204 ? null : res.json();
}

/**
 * Reads a server-sent event stream of the API (`/v1/events...`, `/v1/approvals/stream`) with a
 * streaming fetch (EventSource cannot send the Authorization header) and calls `onEvent` per frame
 * until `signal` aborts or the server ends the stream.
 * @throws ApiError when the server refuses the stream (401, 403, 404, 503).
 */
export async function readEvents<E = StreamEvent>(
  token: string,
  url: string,
  signal: AbortSignal,
  onEvent: (e: E) => void,
): Promise<void> {
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    signal,
    cache: 'no-store',
  });
  if (!res.ok || !res.body) throw await problemOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length === 0) continue;
      onEvent({ event, data: JSON.parse(data.join('\n')) } as E);
    }
  }
}
