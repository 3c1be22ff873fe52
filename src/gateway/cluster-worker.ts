/**
 * Entry point of one worker of a multi-worker gateway (forked by ./cluster.ts through `node:cluster`;
 * never imported). It runs the same gateway as a single process (`startGatewayService`) without the
 * admin API, learns the session table from the primary before its proxy server starts, then applies
 * every change the primary sends and acknowledges it (a revocation after the sockets are destroyed).
 *
 * Client connections come from the primary (`airlock:conn`, the socket as the message's handle): the
 * primary owns the proxy port and sends every connection of one source address (one session) to the
 * same worker, so the per-session limits counted here hold for the whole gateway. The worker's own
 * proxy server listens only on an ephemeral loopback port nobody is told about (Node runs an HTTP
 * server's header and request timeouts only for a listening server). Budgets are counted in the
 * primary (budgets.ts `SharedBudgets`).
 */
import type { Socket } from 'node:net';
import client from 'prom-client';
import { createLogger } from '../log.js';
import {
  isAirlockMessage,
  type PrimaryMessage,
  WORKER_ENV,
  CONTROL_TOKEN_ENV,
  type WorkerMessage,
  type WorkerSpec,
} from './cluster-messages.js';
import { SharedBudgets, type BudgetReply } from './budgets.js';
import { SharedOAuth2, type OAuth2Reply } from './oauth2-shared.js';
import { type RunningGateway, startGatewayService } from './service.js';
import type { SessionTable } from './sessions.js';

const send = (m: WorkerMessage): void => {
  process.send?.(m);
};

async function main(): Promise<void> {
  const spec = JSON.parse(process.env[WORKER_ENV] ?? '') as WorkerSpec;
  const logger = createLogger({ component: 'gateway' }).child({ worker: spec.id });
  let table: SessionTable | null = null;
  let gw: RunningGateway | null = null;
  let synced: (() => void) | null = null;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    const done = gw ? gw.close() : Promise.resolve();
    void done.then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };

  const budgets = new SharedBudgets((q) => send(q));
  const oauth2 = new SharedOAuth2((q) => send(q)); // refresh-token credentials: the primary's cache
  /** Connections handed over before the gateway exists (none expected: sent after `ready`). */
  const early: Socket[] = [];
  process.on('message', (raw: unknown, handle?: unknown) => {
    if (!isAirlockMessage(raw)) return;
    const m = raw as PrimaryMessage;
    if (m.t === 'airlock:conn') {
      const socket = handle as Socket | undefined;
      if (!socket) return;
      if (stopping) socket.destroy();
      else if (gw) gw.gateway.server.emit('connection', socket);
      else early.push(socket);
      return;
    }
    if (m.t === 'airlock:budget-answer' || m.t === 'airlock:budget-bytes-answer')
      return budgets.receive(m as BudgetReply);
    if (m.t === 'airlock:oauth2-token-answer') return oauth2.receive(m as OAuth2Reply);
    if (m.t === 'airlock:stop') return stop();
    if (!table) return; // changes are sent only after hello, when the table exists
    let closedSockets = 0;
    if (m.t === 'airlock:sync') {
      if (m.sessions) table.replaceAll(m.sessions);
      synced?.();
      synced = null;
    } else if (m.t === 'airlock:upsert') table.upsert(m.session);
    else closedSockets = table.revoke(m.id);
    send({ t: 'airlock:ack', seq: m.seq, closedSockets });
  });
  // The primary's death ends the worker (cluster closes the channel).
  process.on('disconnect', stop);
  process.once('SIGTERM', stop);
  process.once('SIGINT', () => {}); // a terminal's Ctrl-C reaches the primary too; it stops the workers

  // The proxy port is the primary's; this server only needs to be listening (see above).
  const config = { ...spec.config, port: 0, listenHost: '127.0.0.1' };
  gw = await startGatewayService(config, 'worker-has-no-admin-api', logger, {
    id: spec.id,
    ...(process.env[CONTROL_TOKEN_ENV] ? { controlToken: process.env[CONTROL_TOKEN_ENV] } : {}),
    budgets,
    oauth2Remote: oauth2.request,
    beforeListen: (sessions) =>
      new Promise<void>((resolve) => {
        table = sessions;
        synced = resolve;
        send({ t: 'airlock:hello' });
      }),
    onAuditFailure: (failure) => send({ t: 'airlock:audit', failure }),
  });
  client.AggregatorRegistry.setRegistries([gw.registry]);
  for (const s of early.splice(0)) gw.gateway.server.emit('connection', s);
  send({ t: 'airlock:ready', proxyPort: gw.proxyPort, pid: process.pid });
}

main().catch((err: unknown) => {
  const m: WorkerMessage = { t: 'airlock:failed', message: (err as Error).message ?? String(err) };
  if (!process.send) process.exit(1);
  process.send(m, () => process.exit(1));
});
