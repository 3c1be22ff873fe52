/**
 * The tamper-evident audit trail (docs/security.md "Tamper-evident audit", docs/reliability.md).
 *
 * - Hash chain: every event a writer emits carries `chain: {stream, seq, prev}` — the writer's
 *   stream id (a random UUID per audit file sink, i.e. per gateway process or worker), its sequence
 *   number in that stream (1, 2, …) and the SHA-256 (hex) of the previous line of the same stream as
 *   written (null for seq 1). Editing, deleting or reordering a line breaks the link to it.
 * - Signatures: the control plane ({@link AuditSigner}, in `airlock serve`) follows the audit file and
 *   every `intervalMs` appends, for each stream that advanced, one signature record to
 *   `<audit file>.sig`: `{stream, seq, hash, time, keyId, sig}` — an Ed25519 signature over
 *   {@link signingPayload} of the hash of that stream's line `seq`, which commits to every earlier
 *   line of the stream through the chain. Someone able to rewrite the audit file (the gateway
 *   container, a host user) can recompute the chain but not the signatures: the key stays with the
 *   control plane (`<stateDir>/audit-keys`, mode 0700, never mounted into the gateway).
 * - Keys rotate ({@link rotateAuditKey}); each record names its key id and every public key is kept,
 *   so old signatures still verify.
 * - {@link verifyAudit} (`airlock audit verify`) checks both and reports the first broken link.
 */
import {
  createHash,
  hash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { appendFile, open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { AuditChainLink, AuditEvent } from './event.js';

/**
 * SHA-256 (hex) of one audit line as written, without its newline: the line's text (hashed as
 * UTF-8) or its bytes. One-shot `crypto.hash` (no Hash object per line: about half the CPU of
 * `createHash().update().digest()` for a 500-byte line on Node 24).
 */
export function lineHash(line: string | Uint8Array): string {
  return hash('sha256', line, 'hex');
}

/**
 * One writer's hash chain. {@link link} gives the next link (not yet used); {@link commit} records
 * the line that carried it, so an event dropped before it was written leaves no gap.
 */
export class AuditChain {
  private seq = 0;
  private prev: string | null = null;

  /** @param stream the stream id (a random UUID by default). */
  constructor(readonly stream: string = randomUUID()) {}

  /** The link the next event carries. */
  link(): AuditChainLink {
    return { stream: this.stream, seq: this.seq + 1, prev: this.prev };
  }

  /**
   * Records `line` (the event serialised with {@link link}'s value, as text or as its UTF-8 bytes
   * without the newline) as the stream's head.
   */
  commit(line: string | Uint8Array): void {
    this.seq += 1;
    this.prev = lineHash(line);
  }

  /** Sets `event.chain` and returns its JSON line (no newline); call {@link commit} once written. */
  serialise(event: AuditEvent): string {
    event.chain = this.link();
    return JSON.stringify(event);
  }
}

/** A signature record: one line of `<audit file>.sig`. */
export interface AuditSignature {
  /** The chain's stream id. */
  stream: string;
  /** The signed event's `chain.seq`. */
  seq: number;
  /** {@link lineHash} of that event's line. */
  hash: string;
  /** ISO-8601 time of signing. */
  time: string;
  /** {@link keyIdOf} the signing key. */
  keyId: string;
  /** Ed25519 signature over {@link signingPayload}, base64. */
  sig: string;
}

/** The bytes signed for a record: a fixed label and the fields, one a line. */
export function signingPayload(r: Omit<AuditSignature, 'sig'>): Buffer {
  return Buffer.from(`airlock-audit-signature-v1\n${r.stream}\n${r.seq}\n${r.hash}\n${r.time}\n${r.keyId}`);
}

/** First 16 hex digits of the SHA-256 of the public key (SPKI DER). */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** A signing key: the private key and its id. */
export interface AuditSigningKey {
  keyId: string;
  privateKey: KeyObject;
}

const CURRENT = 'current';

/**
 * Creates a new Ed25519 key in `dir` (`<keyId>.key` mode 0600, `<keyId>.pub`) and makes it the
 * current one; earlier keys stay (their public keys verify old signatures). `dir` is created 0700.
 * @returns the new key.
 */
export function rotateAuditKey(dir: string): AuditSigningKey {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyId = keyIdOf(publicKey);
  writeFileSync(path.join(dir, `${keyId}.key`), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  writeFileSync(path.join(dir, `${keyId}.pub`), publicKey.export({ type: 'spki', format: 'pem' }));
  const tmp = path.join(dir, `${CURRENT}.${process.pid}.tmp`);
  writeFileSync(tmp, `${keyId}\n`);
  renameSync(tmp, path.join(dir, CURRENT));
  return { keyId, privateKey };
}

/**
 * The current signing key of `dir` (named by its `current` file), created when there is none.
 * @throws Error when `current` names a key whose file cannot be read.
 */
export function loadOrCreateAuditKey(dir: string): AuditSigningKey {
  let keyId: string;
  try {
    keyId = readFileSync(path.join(dir, CURRENT), 'utf8').trim();
  } catch {
    return rotateAuditKey(dir);
  }
  const privateKey = createPrivateKey(readFileSync(path.join(dir, `${keyId}.key`), 'utf8'));
  return { keyId, privateKey };
}

/**
 * Every public key of `dir` by key id (`*.pub`; the id is recomputed from the key, not taken from
 * the file name). @throws Error when `dir` cannot be read.
 */
export function loadAuditPublicKeys(dir: string): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.pub')) continue;
    const key = createPublicKey(readFileSync(path.join(dir, f), 'utf8'));
    keys.set(keyIdOf(key), key);
  }
  return keys;
}

/** Signs the head of a stream. */
export function signHead(
  key: AuditSigningKey,
  head: { stream: string; seq: number; hash: string },
  time = new Date(),
): AuditSignature {
  const rec = {
    stream: head.stream,
    seq: head.seq,
    hash: head.hash,
    time: time.toISOString(),
    keyId: key.keyId,
  };
  return { ...rec, sig: sign(null, signingPayload(rec), key.privateKey).toString('base64') };
}

/** The chain link of a parsed line, or null when it has none or a malformed one. */
function chainOf(value: unknown): AuditChainLink | null {
  if (typeof value !== 'object' || value === null) return null;
  const c = (value as { chain?: unknown }).chain;
  if (typeof c !== 'object' || c === null) return null;
  const { stream, seq, prev } = c as Record<string, unknown>;
  if (typeof stream !== 'string' || !stream) return null;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return null;
  if (prev !== null && (typeof prev !== 'string' || !/^[0-9a-f]{64}$/.test(prev))) return null;
  return { stream, seq, prev };
}

/** Options of {@link AuditSigner}. */
export interface AuditSignerOptions {
  /** The audit file to follow. */
  file: string;
  /** Where the keys are (`<stateDir>/audit-keys`). */
  keysDir: string;
  /** Signature records are appended here. @default `<file>.sig` */
  signatureFile?: string;
  /** Sign every this often, ms. @default 10000 */
  intervalMs?: number;
  /** Told when a round fails (the file unreadable, the key missing); the next round retries. */
  onError?: (err: Error) => void;
}

/**
 * Follows the audit file from its start and signs each stream's newest event every `intervalMs`
 * (only streams that advanced since their last signature; the last signed seq per stream is read
 * back from the signature file on start, so a restarted control plane signs what it missed). The
 * key is read from `keysDir` at each round, so a rotation takes effect at the next signature.
 */
export class AuditSigner {
  private offset = 0;
  private partial = '';
  private readonly heads = new Map<string, { seq: number; hash: string }>();
  private readonly signed = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  readonly signatureFile: string;

  constructor(private readonly o: AuditSignerOptions) {
    this.signatureFile = o.signatureFile ?? `${o.file}.sig`;
  }

  /** Reads the signatures made so far, then signs every `intervalMs` (timer unref'd). */
  async start(): Promise<void> {
    let text = '';
    try {
      text = await readFile(this.signatureFile, 'utf8');
    } catch {
      // none yet
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const r = JSON.parse(line) as AuditSignature;
        if (typeof r.stream === 'string' && typeof r.seq === 'number')
          this.signed.set(r.stream, Math.max(r.seq, this.signed.get(r.stream) ?? 0));
      } catch {
        // verify reports it
      }
    }
    this.timer = setInterval(() => void this.round(), this.o.intervalMs ?? 10_000);
    this.timer.unref();
  }

  /** Stops the timer and signs what was written so far (one last round). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.round();
  }

  /** One round: read what is new, sign the streams that advanced. @returns records written. */
  round(): Promise<number> {
    this.running ??= this.signOnce()
      .catch((err: unknown) => {
        this.o.onError?.(err as Error);
        return 0;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async signOnce(): Promise<number> {
    await this.readNew();
    const due = [...this.heads].filter(([stream, h]) => h.seq > (this.signed.get(stream) ?? 0));
    if (due.length === 0) return 0;
    const key = loadOrCreateAuditKey(this.o.keysDir);
    const now = new Date();
    const records = due.map(([stream, h]) => signHead(key, { stream, ...h }, now));
    await appendFile(this.signatureFile, records.map((r) => JSON.stringify(r) + '\n').join(''), {
      mode: 0o640,
    });
    for (const r of records) this.signed.set(r.stream, r.seq);
    return records.length;
  }

  private async readNew(): Promise<void> {
    let size: number;
    try {
      size = (await stat(this.o.file)).size;
    } catch {
      return;
    }
    if (size < this.offset) {
      this.offset = 0; // truncated or replaced: read the new file from its start
      this.partial = '';
    }
    if (size === this.offset) return;
    const fh = await open(this.o.file, 'r');
    try {
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      const lines = (this.partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line) continue;
        let link: AuditChainLink | null;
        try {
          link = chainOf(JSON.parse(line));
        } catch {
          continue;
        }
        if (!link) continue;
        const head = this.heads.get(link.stream);
        // Sign only what extends the head it saw (a line out of order is verify's to report).
        if (!head || link.seq > head.seq)
          this.heads.set(link.stream, { seq: link.seq, hash: lineHash(line) });
      }
    } finally {
      await fh.close();
    }
  }
}

/** The first broken link {@link verifyAudit} found. */
export interface AuditBreak {
  /** The file (audit or signature file) and 1-based line where the break is. */
  file: string;
  line: number;
  message: string;
}

/** What {@link verifyAudit} found. */
export interface AuditVerification {
  ok: boolean;
  /** The first broken link, in file order (signature-file problems first); null when ok. */
  firstBreak: AuditBreak | null;
  /** Audit lines read (events). */
  events: number;
  /** Streams seen. */
  streams: number;
  /** Signature records that verified and match their event. */
  signaturesVerified: number;
  /** Events after the last signature of their stream (written since the control plane last signed). */
  unsigned: number;
  /** Events of `sessionId`, when one was asked for. */
  sessionEvents?: number;
}

/** Options of {@link verifyAudit}. */
export interface VerifyAuditOptions {
  /** Name used in reports for the audit text. */
  file: string;
  /** The signature file's text, or null when there is none. */
  signatures: string | null;
  /** Name used in reports for the signature file. */
  signatureFile: string;
  /** Public keys by key id ({@link loadAuditPublicKeys}). */
  keys: Map<string, KeyObject>;
  /**
   * Events not covered by a signature whose `time` is older than this many ms before `now` are a
   * break (signatures deleted, or the control plane stopped before it signed them); Infinity allows
   * unsigned events. @default 120000
   */
  maxUnsignedAgeMs?: number;
  /** @default Date.now() */
  now?: number;
  /** Count the events of this session (the whole file is verified: chains span sessions). */
  sessionId?: string;
}

/**
 * Verifies an audit file's hash chains and its signatures (see the module comment). Stops at the
 * first broken chain link; a bad signature record, a signed event missing from the file or edited,
 * and (with `maxUnsignedAgeMs`) an old unsigned event are breaks too. Pure: no I/O.
 */
export function verifyAudit(text: string, o: VerifyAuditOptions): AuditVerification {
  const breaks: AuditBreak[] = [];
  const at = (file: string, line: number, message: string): void => void breaks.push({ file, line, message });
  // Signature records by stream and seq (checked against the events as they are read).
  const sigs = new Map<string, Map<number, { line: number; hash: string }[]>>();
  const maxSigned = new Map<string, number>();
  let signaturesVerified = 0;
  const sigLines = o.signatures === null ? [] : o.signatures.split('\n');
  sigLines.forEach((line, i) => {
    if (!line && i === sigLines.length - 1) return;
    const n = i + 1;
    let r: AuditSignature;
    try {
      r = JSON.parse(line) as AuditSignature;
    } catch {
      return at(o.signatureFile, n, 'not a JSON signature record');
    }
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.stream !== 'string' ||
      typeof r.seq !== 'number' ||
      typeof r.hash !== 'string' ||
      typeof r.time !== 'string' ||
      typeof r.keyId !== 'string' ||
      typeof r.sig !== 'string'
    )
      return at(o.signatureFile, n, 'malformed signature record (stream, seq, hash, time, keyId, sig)');
    const key = o.keys.get(r.keyId);
    if (!key) return at(o.signatureFile, n, `signed with unknown key ${r.keyId} (no public key for it)`);
    if (!verify(null, signingPayload(r), key, Buffer.from(r.sig, 'base64')))
      return at(o.signatureFile, n, `signature does not verify with key ${r.keyId} (record edited)`);
    let bySeq = sigs.get(r.stream);
    if (!bySeq) sigs.set(r.stream, (bySeq = new Map()));
    const list = bySeq.get(r.seq) ?? [];
    list.push({ line: n, hash: r.hash });
    bySeq.set(r.seq, list);
    maxSigned.set(r.stream, Math.max(r.seq, maxSigned.get(r.stream) ?? 0));
  });

  const streams = new Map<string, { seq: number; hash: string; line: number }>();
  const firstUnsigned = new Map<string, { line: number; time: number }>();
  let events = 0;
  let sessionEvents = 0;
  const lines = text.split('\n');
  let chainBroken = false;
  for (let i = 0; i < lines.length && !chainBroken; i++) {
    const line = lines[i]!;
    const n = i + 1;
    if (i === lines.length - 1) {
      if (line === '') break;
      at(o.file, n, 'last line has no newline (a write cut short, or the line was edited)');
      chainBroken = true;
      break;
    }
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      at(o.file, n, 'not a JSON event (line edited or inserted)');
      chainBroken = true;
      break;
    }
    events++;
    if (o.sessionId !== undefined && (value as { sessionId?: unknown }).sessionId === o.sessionId)
      sessionEvents++;
    const link = chainOf(value);
    if (!link) {
      at(o.file, n, 'event without a chain link (line inserted, or written before audit chaining)');
      chainBroken = true;
      break;
    }
    const hash = lineHash(line);
    const prev = streams.get(link.stream);
    const short = link.stream.slice(0, 8);
    if (!prev) {
      if (link.seq !== 1 || link.prev !== null) {
        at(
          o.file,
          n,
          `stream ${short} starts at seq ${link.seq}: events 1..${link.seq - 1} are missing (deleted, or a rotated file: verify the files concatenated in order)`,
        );
        chainBroken = true;
      }
    } else if (link.seq !== prev.seq + 1) {
      at(
        o.file,
        n,
        link.seq > prev.seq + 1
          ? `stream ${short}: seq ${link.seq} follows seq ${prev.seq} at line ${prev.line} (events deleted or reordered)`
          : `stream ${short}: seq ${link.seq} follows seq ${prev.seq} at line ${prev.line} (events reordered or duplicated)`,
      );
      chainBroken = true;
    } else if (link.prev !== prev.hash) {
      at(
        o.file,
        prev.line,
        `event edited: its hash does not match the link of the next event of stream ${short} (line ${n})`,
      );
      chainBroken = true;
    }
    if (chainBroken) break;
    streams.set(link.stream, { seq: link.seq, hash, line: n });
    const signed = sigs.get(link.stream)?.get(link.seq);
    if (signed) {
      for (const s of signed) {
        if (s.hash !== hash)
          at(
            o.file,
            n,
            `event edited: its hash does not match the signature at ${o.signatureFile}:${s.line}`,
          );
        else signaturesVerified++;
      }
      sigs.get(link.stream)!.delete(link.seq);
    }
    if (link.seq > (maxSigned.get(link.stream) ?? 0) && !firstUnsigned.has(link.stream)) {
      const t = Date.parse(String((value as { time?: unknown }).time));
      firstUnsigned.set(link.stream, { line: n, time: Number.isFinite(t) ? t : 0 });
    }
  }
  if (!chainBroken) {
    // Signed events never seen: deleted from the end of their stream (or the whole stream deleted).
    for (const [stream, bySeq] of sigs)
      for (const [seq, list] of bySeq) {
        const head = streams.get(stream);
        for (const s of list)
          at(
            o.signatureFile,
            s.line,
            `signed event seq ${seq} of stream ${stream.slice(0, 8)} is not in ${o.file}` +
              (head
                ? ` (the stream ends at seq ${head.seq}, line ${head.line}: events deleted)`
                : ' (stream deleted)'),
          );
      }
    const maxAge = o.maxUnsignedAgeMs ?? 120_000;
    const now = o.now ?? Date.now();
    for (const [stream, u] of firstUnsigned)
      if (now - u.time > maxAge)
        at(
          o.file,
          u.line,
          `event not covered by any signature of stream ${stream.slice(0, 8)} and older than ${Math.round(maxAge / 1000)} s (signatures deleted, or the control plane stopped before signing)`,
        );
  }
  let unsigned = 0;
  for (const [stream, h] of streams) unsigned += Math.max(0, h.seq - (maxSigned.get(stream) ?? 0));
  // Signature-file problems first, then the earliest audit line.
  breaks.sort((a, b) =>
    a.file === b.file
      ? a.line - b.line
      : a.file === o.signatureFile
        ? -1
        : b.file === o.signatureFile
          ? 1
          : 0,
  );
  return {
    ok: breaks.length === 0,
    firstBreak: breaks[0] ?? null,
    events,
    streams: streams.size,
    signaturesVerified,
    unsigned,
    ...(o.sessionId !== undefined ? { sessionEvents } : {}),
  };
}
