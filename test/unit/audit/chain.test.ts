/**
 * Tamper-evident audit (issue 15 section 4): the real FileAuditSink writes a chained file, the
 * AuditSigner signs it with an Ed25519 key, and `airlock audit verify` (run in-process through
 * commander) finds each edit, deletion and reordering at its line; rotated keys keep verifying.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditSigner,
  lineHash,
  loadAuditPublicKeys,
  verifyAudit,
  type AuditSignature,
} from '../../../src/audit/chain.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { FileAuditSink } from '../../../src/audit/file-sink.js';
import { AuditRing } from '../../../src/audit/ring-sink.js';
import { registerAuditCommands } from '../../../src/cli/audit-verify.js';
import { CliError } from '../../../src/cli/client.js';

const event = (n: number, sessionId = 's1'): AuditEvent => ({
  time: new Date().toISOString(),
  sessionId,
  role: 'analyst',
  method: 'GET',
  scheme: 'http',
  host: 'forum.test',
  port: 80,
  path: `/posts/${n}`,
  decision: 'allow',
  rule: 'policy.csv:1: p, analyst, forum.test, /posts/*, GET, allow',
  reason: 'rule_allow',
  status: 200,
  durationMs: 1.25,
  bytesOut: 0,
  bytesIn: 42,
  policyVersion: 'abc',
});

let dir: string;
let file: string;
let keys: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-chain-'));
  file = path.join(dir, 'audit.jsonl');
  keys = path.join(dir, 'audit-keys');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `n` events through `writers` real file sinks (round robin: interleaved streams). */
async function write(n: number, writers = 1, from = 0): Promise<void> {
  const sinks = Array.from({ length: writers }, () => new FileAuditSink(file));
  for (let i = 0; i < n; i++) {
    sinks[i % writers]!.emit(event(from + i));
    if (i % 7 === 0) await new Promise((r) => setImmediate(r)); // several writes, not one
  }
  for (const s of sinks) expect(await s.close()).toBe(0);
}

async function sign(): Promise<number> {
  const signer = new AuditSigner({ file, keysDir: keys, intervalMs: 60_000 });
  await signer.start();
  const n = await signer.round();
  await signer.close();
  return n;
}

/** Runs `airlock audit verify ARGS` in-process: exit code (0, 1 or a CliError's) and output. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const program = new Command().exitOverride();
  const audit = program.command('audit');
  let out = '';
  registerAuditCommands(audit, { out: (t) => void (out += t) });
  const saved = process.exitCode;
  process.exitCode = 0;
  try {
    await program.parseAsync(['node', 'airlock', 'audit', ...args]);
    return { code: Number(process.exitCode ?? 0), out };
  } catch (err) {
    if (err instanceof CliError) return { code: err.exitCode, out: out + err.message };
    throw err;
  } finally {
    process.exitCode = saved;
  }
}

const verifyFile = (...extra: string[]): Promise<{ code: number; out: string }> =>
  cli(['verify', file, '--keys', keys, ...extra]);

const lines = (): string[] => readFileSync(file, 'utf8').split('\n').slice(0, -1);
const put = (ls: string[]): void => writeFileSync(file, ls.map((l) => l + '\n').join(''));

describe('audit hash chain', () => {
  it('links every event of a stream to the previous line as written', async () => {
    await write(20, 2);
    const parsed = lines().map((l) => JSON.parse(l) as AuditEvent);
    const streams = new Set(parsed.map((e) => e.chain!.stream));
    expect(streams.size).toBe(2);
    for (const s of streams) {
      const mine = lines().filter((l) => (JSON.parse(l) as AuditEvent).chain!.stream === s);
      mine.forEach((l, i) => {
        const c = (JSON.parse(l) as AuditEvent).chain!;
        expect(c.seq).toBe(i + 1);
        expect(c.prev).toBe(i === 0 ? null : lineHash(mine[i - 1]!));
      });
    }
  });

  it('an untouched, signed file verifies (exit 0)', async () => {
    await write(30, 3);
    expect(await sign()).toBe(3);
    const r = await verifyFile();
    expect(r).toEqual({
      code: 0,
      out: 'OK: 30 event(s), 3 stream(s), 3 signature(s) verified, 0 event(s) not yet signed\n',
    });
  });

  it('an edited line is named (chain), even when only a number changed', async () => {
    await write(10);
    await sign();
    const ls = lines();
    ls[3] = ls[3]!.replace('"bytesIn":42', '"bytesIn":43');
    put(ls);
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${file}:4: event edited`));
  });

  it('an edited last line is caught by its signature', async () => {
    await write(5);
    await sign();
    const ls = lines();
    ls[4] = ls[4]!.replace('"decision":"allow"', '"decision":"deny"');
    put(ls);
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${file}:5: event edited: its hash does not match the signature`));
  });

  it('a deleted line is named', async () => {
    await write(10);
    await sign();
    put(lines().filter((_, i) => i !== 6));
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      new RegExp(`^${file}:7: stream [0-9a-f]{8}: seq 8 follows seq 6 at line 6 \\(events deleted`),
    );
  });

  it('deleting the signed tail is caught by the signature', async () => {
    await write(10);
    await sign();
    put(lines().slice(0, 8));
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      /audit\.jsonl\.sig:1: signed event seq 10 .* ends at seq 8, line 8: events deleted/,
    );
  });

  it('reordered lines are named', async () => {
    await write(10);
    await sign();
    const ls = lines();
    [ls[2], ls[5]] = [ls[5]!, ls[2]!];
    put(ls);
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${file}:3: stream [0-9a-f]{8}: seq 6 follows seq 2 at line 2`));
  });

  it('a rewritten chain (recomputed hashes) fails on the signature', async () => {
    await write(6);
    await sign();
    // The attacker edits line 2 and recomputes every later link: the chain is whole again.
    const ls = lines().map((l) => JSON.parse(l) as AuditEvent);
    ls[1]!.path = '/posts/innocent';
    let prev: string | null = null;
    const out = ls.map((e) => {
      e.chain!.prev = prev;
      const text = JSON.stringify(e);
      prev = lineHash(text);
      return text;
    });
    put(out);
    const r = await verifyFile();
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${file}:6: event edited: its hash does not match the signature`));
  });

  it('a line inserted without a link, or not JSON, is named', async () => {
    await write(4);
    await sign();
    const ls = lines();
    put([...ls.slice(0, 2), JSON.stringify(event(99)), ...ls.slice(2)]);
    expect((await verifyFile()).out).toMatch(new RegExp(`^${file}:3: event without a chain link`));
    put([...ls.slice(0, 1), 'garbage', ...ls.slice(1)]);
    expect((await verifyFile()).out).toMatch(new RegExp(`^${file}:2: not a JSON event`));
  });

  it('an edited or forged signature record is named', async () => {
    await write(4);
    await sign();
    const sigFile = `${file}.sig`;
    const rec = JSON.parse(readFileSync(sigFile, 'utf8')) as AuditSignature;
    writeFileSync(sigFile, JSON.stringify({ ...rec, seq: 3 }) + '\n');
    expect(await verifyFile()).toMatchObject({
      code: 1,
      out: expect.stringMatching(/\.sig:1: signature does not verify/),
    });
    writeFileSync(sigFile, JSON.stringify({ ...rec, keyId: '0123456789abcdef' }) + '\n');
    expect((await verifyFile()).out).toMatch(/\.sig:1: signed with unknown key 0123456789abcdef/);
  });

  it('signatures deleted: old unsigned events are a break, recent ones only counted', async () => {
    await write(4);
    rmSync(keys, { recursive: true, force: true });
    expect(await verifyFile()).toEqual({
      code: 0,
      out: 'OK: 4 event(s), 1 stream(s), 0 signature(s) verified, 4 event(s) not yet signed\n',
    });
    const text = readFileSync(file, 'utf8');
    const r = verifyAudit(text, {
      file,
      signatures: null,
      signatureFile: `${file}.sig`,
      keys: new Map(),
      now: Date.now() + 10 * 60_000,
    });
    expect(r.ok).toBe(false);
    expect(r.firstBreak).toMatchObject({ file, line: 1 });
    expect(r.firstBreak!.message).toMatch(/not covered by any signature .* older than 120 s/);
  });

  it('a rotated key: old signatures still verify, new ones use the new key', async () => {
    await write(5);
    await sign();
    const first = readFileSync(path.join(keys, 'current'), 'utf8').trim();
    const rotated = await cli(['rotate-key', '--keys', keys]);
    expect(rotated.code).toBe(0);
    const second = readFileSync(path.join(keys, 'current'), 'utf8').trim();
    expect(second).not.toBe(first);
    expect(rotated.out).toBe(`new audit signing key ${second} in ${keys}\n`);
    await write(5, 1, 100); // a new writer: a new stream
    const signer = new AuditSigner({ file, keysDir: keys, intervalMs: 60_000 });
    await signer.start();
    expect(await signer.round()).toBe(1); // the first stream is signed already (read back)
    await signer.close();
    const recs = readFileSync(`${file}.sig`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditSignature);
    expect(recs.map((r) => r.keyId)).toEqual([first, second]);
    expect([...loadAuditPublicKeys(keys).keys()].sort()).toEqual([first, second].sort());
    expect(readdirSync(keys).filter((f) => f.endsWith('.key'))).toHaveLength(2);
    expect(await verifyFile()).toEqual({
      code: 0,
      out: 'OK: 10 event(s), 2 stream(s), 2 signature(s) verified, 0 event(s) not yet signed\n',
    });
    // Without the old public key its signatures are refused: the key id is really checked.
    rmSync(path.join(keys, `${first}.pub`));
    expect((await verifyFile()).out).toMatch(new RegExp(`\\.sig:1: signed with unknown key ${first}`));
  });

  it('verify SESSION reads the configured audit file and counts the session; usage errors exit 2', async () => {
    const cfgFile = path.join(dir, 'airlock.yaml');
    writeFileSync(cfgFile, `stateDir: ${dir}\naudit:\n  file: audit.jsonl\n`);
    const sinks = new FileAuditSink(file);
    for (let i = 0; i < 6; i++) sinks.emit(event(i, i % 2 ? 'sess-a' : 'sess-b'));
    await sinks.close();
    await sign();
    expect(await cli(['verify', 'sess-a', '-c', cfgFile])).toEqual({
      code: 0,
      out: 'OK: 6 event(s), 1 stream(s), 1 signature(s) verified, 0 event(s) not yet signed, 3 event(s) of the session\n',
    });
    expect(await cli(['verify', 'sess-zzz', '-c', cfgFile])).toMatchObject({ code: 2 });
    expect(await cli(['verify', '/nonexistent/x.jsonl', '-c', cfgFile])).toMatchObject({ code: 2 });
    expect(await cli(['verify', file, '--keys', keys, '--max-unsigned-age', 'soon'])).toMatchObject({
      code: 2,
    });
    expect(await cli(['verify', dir, '--keys', keys])).toMatchObject({ code: 2 }); // a directory: EISDIR
  });

  it('events that pass through the gateway ring keep the link the file sink gave them', async () => {
    const ring = new AuditRing(100);
    const sink = new FileAuditSink(file, false, { onLine: ring.push });
    for (let i = 0; i < 5; i++) sink.emit(event(i));
    await sink.close();
    // The collector (Kubernetes) writes the ring's events as JSON: the same lines, so they verify.
    const collected = ring
      .page(0, 100)
      .events.map((e) => JSON.stringify(JSON.parse(e.line)))
      .join('\n');
    expect(collected + '\n').toBe(readFileSync(file, 'utf8'));
  });

  it('a dropped event (buffer full) leaves no gap in the chain', async () => {
    const sink = new FileAuditSink(file, false, { maxBufferedBytes: 900 });
    const dropped: AuditEvent[] = [];
    const s2 = new FileAuditSink(file, false, { maxBufferedBytes: 900, onDrop: (e) => dropped.push(e) });
    await sink.close();
    for (let i = 0; i < 5; i++) s2.emit(event(i)); // ~380 bytes each: the third does not fit
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped[0]!.chain).toBeUndefined();
    await s2.close();
    const r = verifyAudit(readFileSync(file, 'utf8'), {
      file,
      signatures: null,
      signatureFile: 'x',
      keys: new Map(),
    });
    expect(r).toMatchObject({ ok: true, events: 5 - dropped.length });
  });
});
