/**
 * `airlock approvals ls|show|approve|deny|watch` (docs/approvals.md): the approver's side from a
 * terminal, over `/v1/approvals`. `show` prints the exact request a person is asked to approve —
 * method, URL, session, rule, and the body (as text when it reads as text).
 */
import type { Command } from 'commander';
import { request } from 'undici';
import type { Approval } from '../sessions/approvals.js';
import { ApiClient, apiToken, apiUrl, CliError } from './client.js';

/** Where the commands write (tests pass their own). */
export interface ApprovalsOutput {
  out(text: string): void;
}
const stdout: ApprovalsOutput = { out: (t) => process.stdout.write(t) };

const COLUMNS = ['ID', 'STATUS', 'SESSION', 'ROLE', 'METHOD', 'URL', 'BYTES', 'REQUESTED'] as const;

/** The approvals as a table, newest first; columns padded with spaces. */
export function formatApprovalTable(list: readonly Approval[]): string {
  if (list.length === 0) return 'no approvals\n';
  const rows = list.map((a) => [
    a.id,
    a.status,
    a.sessionId,
    a.role,
    a.method,
    a.url,
    String(a.bodyBytes),
    a.requestedAt,
  ]);
  const widths = COLUMNS.map((h, k) => Math.max(h.length, ...rows.map((r) => (r[k] as string).length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, k) => (k === cells.length - 1 ? c : c.padEnd(widths[k] as number)))
      .join('  ')
      .trimEnd() + '\n';
  return line(COLUMNS) + rows.map(line).join('');
}

/** One approval in full, for a person about to decide it. */
export function formatApproval(a: Approval): string {
  const lines = [
    `approval   ${a.id} (${a.status})`,
    `request    ${a.method} ${a.url}`,
    `session    ${a.sessionId} (role ${a.role}, created by ${a.sessionCreator || '-'})`,
    `rule       ${a.rule}`,
    `policy     ${a.policyVersion}`,
    `requested  ${a.requestedAt} (pending until ${a.pendingUntil})`,
    `body       ${a.bodyBytes} bytes, ${a.contentType || 'no content type'}, sha256 ${a.bodySha256}`,
  ];
  if (a.decidedBy)
    lines.push(`decided    ${a.status} by ${a.decidedBy} at ${a.decidedAt ?? '?'}: ${a.reason ?? ''}`);
  if (a.status === 'approved' || a.status === 'used')
    lines.push(`uses       ${a.used} of ${a.uses}, until ${a.usableUntil ?? '?'}`);
  const shown =
    a.bodyText ?? (a.bodyBytes > 0 ? `(not text: first bytes, base64) ${a.bodyPreview}` : '(empty)');
  const cut =
    a.bodyBytes > Buffer.from(a.bodyPreview, 'base64').length
      ? `\n… (${a.bodyBytes} bytes in all; the first 4 KiB shown)`
      : '';
  return `${lines.join('\n')}\n---\n${shown}${cut}\n`;
}

/** Follows `GET /v1/approvals/stream` and prints each change until the stream ends. */
async function watch(base: string, token: string, io: ApprovalsOutput, json: boolean): Promise<void> {
  let res;
  try {
    res = await request(`${base}/v1/approvals/stream`, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      bodyTimeout: 0,
    });
  } catch (err) {
    throw new CliError(`cannot reach the Airlock API at ${base}: ${(err as Error).message}`);
  }
  if (res.statusCode !== 200)
    throw new CliError(`GET /v1/approvals/stream: ${res.statusCode} ${await res.body.text()}`);
  let buf = '';
  for await (const chunk of res.body) {
    buf += (chunk as Buffer).toString('utf8');
    let i;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const event = /^event: (.+)$/m.exec(block)?.[1];
      const data = /^data: (.+)$/m.exec(block)?.[1];
      if (!event || !data) continue;
      const a = JSON.parse(data) as Approval;
      io.out(
        json
          ? JSON.stringify({ event, approval: a }) + '\n'
          : `${new Date().toISOString()}  ${event.padEnd(9)}  ${a.id}  ${a.method} ${a.url}  session ${a.sessionId} (${a.role})\n`,
      );
    }
  }
}

/** Registers `airlock approvals`. */
export function registerApprovalCommands(program: Command): void {
  const cmd = program
    .command('approvals')
    .description('requests waiting for a person: list, show, approve, deny, watch');
  const client = (o: { api?: string }): ApiClient => new ApiClient(apiUrl(o.api), apiToken());
  cmd
    .command('ls')
    .description('list approvals (pending by default)')
    .option('--api <url>')
    .option('--status <status>', 'pending, approved, denied, expired, cancelled, used or all', 'pending')
    .option('--session <id>', 'only this session')
    .option('--json', 'the API answer as JSON')
    .action(async (o: { api?: string; status: string; session?: string; json?: boolean }) => {
      const q = new URLSearchParams();
      if (o.status !== 'all') q.set('status', o.status);
      if (o.session) q.set('sessionId', o.session);
      const list = await client(o).call<{ approvals: Approval[] }>('GET', `/v1/approvals?${q}`);
      stdout.out(o.json ? JSON.stringify(list, null, 2) + '\n' : formatApprovalTable(list.approvals));
    });
  cmd
    .command('show')
    .description('one approval in full: the exact request and its body')
    .argument('<id>')
    .option('--api <url>')
    .option('--json', 'the API answer as JSON')
    .action(async (id: string, o: { api?: string; json?: boolean }) => {
      const a = await client(o).call<Approval>('GET', `/v1/approvals/${encodeURIComponent(id)}`);
      stdout.out(o.json ? JSON.stringify(a, null, 2) + '\n' : formatApproval(a));
    });
  cmd
    .command('approve')
    .description('approve exactly this request (once, unless --uses)')
    .argument('<id>')
    .requiredOption('--reason <text>', 'why (recorded in the audit)')
    .option('--uses <n>', 'times the same request may be forwarded', (v) => Number(v))
    .option('--ttl <seconds>', 'how long the approval may be used', (v) => Number(v))
    .option('--api <url>')
    .action(async (id: string, o: { api?: string; reason: string; uses?: number; ttl?: number }) => {
      const a = await client(o).call<Approval>('POST', `/v1/approvals/${encodeURIComponent(id)}/approve`, {
        reason: o.reason,
        ...(o.uses !== undefined ? { uses: o.uses } : {}),
        ...(o.ttl !== undefined ? { ttlSeconds: o.ttl } : {}),
      });
      stdout.out(`approved ${a.id}: ${a.method} ${a.url} (${a.uses} use(s) until ${a.usableUntil ?? '?'})\n`);
    });
  cmd
    .command('deny')
    .description('deny this request')
    .argument('<id>')
    .requiredOption('--reason <text>', 'why (recorded in the audit; the agent sees it)')
    .option('--api <url>')
    .action(async (id: string, o: { api?: string; reason: string }) => {
      const a = await client(o).call<Approval>('POST', `/v1/approvals/${encodeURIComponent(id)}/deny`, {
        reason: o.reason,
      });
      stdout.out(`denied ${a.id}: ${a.method} ${a.url}\n`);
    });
  cmd
    .command('watch')
    .description('print approvals as they are requested and decided (pending ones first)')
    .option('--api <url>')
    .option('--json', 'one JSON object per line')
    .action(async (o: { api?: string; json?: boolean }) => {
      await watch(apiUrl(o.api), apiToken(), stdout, o.json === true);
    });
}
