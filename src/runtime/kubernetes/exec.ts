import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { Exec, type KubeConfig, type V1Status } from '@kubernetes/client-node';
import { ExecTimeoutError, RuntimeError } from '../../errors.js';
import type { ExecResult } from '../types.js';

/** Bytes of stdout/stderr kept per exec call (as the Docker runtime); more is cut with a marker. */
export const EXEC_OUTPUT_CAP = 1024 * 1024;

/** A Writable that keeps the first EXEC_OUTPUT_CAP bytes and passes every chunk on as text. */
class Capped extends Writable {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private cut = false;
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly onText?: (text: string) => void) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.onText) {
      const t = this.decoder.write(chunk);
      if (t) this.onText(t);
    }
    if (this.size < EXEC_OUTPUT_CAP) {
      const take = chunk.subarray(0, EXEC_OUTPUT_CAP - this.size);
      this.chunks.push(take);
      this.size += take.length;
      if (take.length < chunk.length) this.cut = true;
    } else this.cut = true;
    done();
  }
  text(): string {
    return (
      Buffer.concat(this.chunks).toString('utf8') + (this.cut ? '\n[airlock: output truncated at 1 MiB]' : '')
    );
  }
}

/**
 * Exit code from the exec API's final Status: `Success` → 0; `NonZeroExitCode` carries the code in
 * `details.causes[{reason: "ExitCode", message: "<n>"}]`; anything else (e.g. the command was not found)
 * is -1 with the message kept by the caller.
 */
export function exitCodeOf(status: V1Status): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  const n = cause?.message === undefined ? NaN : Number(cause.message);
  return Number.isInteger(n) ? n : -1;
}

/**
 * Runs `command` in a Pod's container through the Kubernetes exec API (a WebSocket to the API server,
 * which the kubelet serves) and waits for its exit. stdout/stderr are capped per stream at
 * EXEC_OUTPUT_CAP bytes; `onOutput` receives every chunk as UTF-8 text, uncapped.
 * @throws ExecTimeoutError after `timeoutMs`; RuntimeError when the connection fails or closes without
 *   an exit status.
 */
export async function execInPod(
  kc: KubeConfig,
  target: { namespace: string; pod: string; container: string },
  command: string[],
  timeoutMs: number,
  onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
): Promise<ExecResult> {
  const out = new Capped(onOutput && ((t) => onOutput('stdout', t)));
  const err = new Capped(onOutput && ((t) => onOutput('stderr', t)));
  let status: V1Status | null = null;
  let timer: NodeJS.Timeout | undefined;
  let ws: Awaited<ReturnType<Exec['exec']>> | undefined;
  try {
    const done = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new ExecTimeoutError(timeoutMs)), timeoutMs);
      new Exec(kc)
        .exec(target.namespace, target.pod, target.container, command, out, err, null, false, (s) => {
          status = s;
        })
        .then((socket) => {
          ws = socket;
          socket.on('close', () => resolve());
          socket.on('error', (e: Error) => reject(e));
        }, reject);
    });
    await done;
  } catch (e) {
    ws?.terminate();
    if (e instanceof ExecTimeoutError) throw e;
    throw new RuntimeError(`exec in pod ${target.namespace}/${target.pod}: ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    clearTimeout(timer);
  }
  const final = status as V1Status | null;
  if (!final)
    throw new RuntimeError(`exec in pod ${target.namespace}/${target.pod}: closed without an exit status`);
  const code = exitCodeOf(final);
  const stderr = err.text();
  return {
    exitCode: code,
    stdout: out.text(),
    stderr: code === -1 && final.message ? `${stderr}${stderr ? '\n' : ''}${final.message}` : stderr,
  };
}
