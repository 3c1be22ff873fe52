#!/usr/bin/env node
import { registerApprovalCommands } from './approvals.js';
import { availableParallelism } from 'node:os';
import { Command, Option } from 'commander';
import { loadConfig } from '../config/load.js';
import { AirlockError, ConfigError } from '../errors.js';
import type * as GatewayService from '../gateway/service.js';
import { createLogger } from '../log.js';
import type { AuditEvent } from '../audit/event.js';
import type { SessionView } from '../sessions/types.js';
import { registerAuditCommands } from './audit-verify.js';
import { ApiClient, CliError, apiToken, apiUrl } from './client.js';
import { registerCredentialsCommands } from './credentials.js';
import { registerPolicyCommands } from './policy.js';

const program = new Command();
program
  .name('airlock')
  .description('Per-session sandboxes for AI agents whose only exit is a policy-enforcing egress gateway')
  .showHelpAfterError();

function client(opts: { api?: string; stateDir?: string }): ApiClient {
  return new ApiClient(apiUrl(opts.api), apiToken(opts.stateDir));
}

program
  .command('serve')
  .description(
    'start the sandbox API and the egress gateway (runtime.kind: docker, the default, or kubernetes)',
  )
  .option('-c, --config <file>', 'YAML config file (docs/config.md)')
  .action(async (opts: { config?: string }) => {
    const cfg = loadConfig(opts.config);
    const logger = createLogger();
    const { startServer } = await import('./serve.js');
    const running = await startServer(cfg, logger);
    process.stdout.write(`Airlock API listening on ${running.url}\n`);
    process.stdout.write(
      `ready: policy ${running.policy.current()?.version ?? 'NONE (every call denied)'}, ` +
        `${running.manager.list().length} session(s) recovered\n`,
    );
    const stop = (): void => {
      void running.close().then(() => process.exit(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

program
  .command('gateway')
  .description(
    'run the egress gateway process (inside the gateway container; configured by the control plane)',
  )
  .action(async () => {
    const raw = process.env.AIRLOCK_GATEWAY_CONFIG;
    const token = process.env.AIRLOCK_ADMIN_TOKEN;
    if (!raw) throw new ConfigError('AIRLOCK_GATEWAY_CONFIG is not set', 'AIRLOCK_GATEWAY_CONFIG');
    if (!token) throw new ConfigError('AIRLOCK_ADMIN_TOKEN is not set', 'AIRLOCK_ADMIN_TOKEN');
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ConfigError('AIRLOCK_GATEWAY_CONFIG is not valid JSON', 'AIRLOCK_GATEWAY_CONFIG');
    }
    const logger = createLogger({ component: 'gateway' });
    // Loaded here, not at start-up: the gateway's modules cost most of every other command's start.
    const { startGatewayService } = await import('../gateway/service.js');
    const { startGatewayCluster } = await import('../gateway/cluster.js');
    const input = parsed as Parameters<typeof GatewayService.startGatewayService>[0];
    // gateway.workers: unset means every core this process may use (docs/config.md).
    const workers = (input as { workers?: unknown }).workers ?? availableParallelism();
    const gw =
      typeof workers === 'number' && workers > 1
        ? await startGatewayCluster(input, token, { workers, logger })
        : await startGatewayService(input, token, logger);
    logger.info({ proxyPort: gw.proxyPort, adminPort: gw.adminPort, workers }, 'gateway listening');
    const stop = (): void => {
      void gw.close().then(() => process.exit(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

function summarize(events: AuditEvent[]): string {
  const allowed = events.filter((e) => e.decision === 'allow').length;
  const denied = events.filter((e) => e.decision === 'deny');
  // Complain mode (modes.yaml): forwarded, but the rules deny them.
  const would = events.filter((e) => e.decision === 'would_deny');
  const lines = [
    `airlock: ${allowed} call(s) allowed, ${denied.length} denied` +
      (would.length > 0 ? `, ${would.length} would be denied (complain mode)` : ''),
  ];
  for (const e of denied.slice(0, 20)) {
    lines.push(`  denied ${e.method} ${e.scheme}://${e.host}:${e.port}${e.path} (${e.reason})`);
  }
  for (const e of would.slice(0, 20)) {
    lines.push(`  would deny ${e.method} ${e.scheme}://${e.host}:${e.port}${e.path} (${e.reason})`);
  }
  return lines.join('\n') + '\n';
}

program
  .command('run')
  .description('create a session, run CMD in it, print a summary of allowed/denied calls, remove it')
  .requiredOption('-r, --role <role>', 'role the session runs as')
  .option('-i, --image <image>', 'sandbox image')
  .option('--api <url>', 'API base URL (default $AIRLOCK_API_URL or http://127.0.0.1:8080)')
  .option('--ttl <seconds>', 'session TTL in seconds', (v) => Number(v))
  .option('--timeout <seconds>', 'command timeout in seconds', (v) => Number(v), 600)
  .argument('<cmd...>', 'command and arguments (after --)')
  .action(
    async (
      cmd: string[],
      opts: { role: string; image?: string; api?: string; ttl?: number; timeout: number },
    ) => {
      const api = client(opts);
      const session = await api.call<SessionView>('POST', '/v1/sessions', {
        role: opts.role,
        ...(opts.image ? { image: opts.image } : {}),
        ...(opts.ttl ? { ttlSeconds: opts.ttl } : {}),
      });
      process.stderr.write(`airlock: session ${session.id} (role ${session.role})\n`);
      let exitCode: number;
      const cleanup = async (): Promise<void> => {
        await api.call('DELETE', `/v1/sessions/${session.id}`).catch(() => undefined);
      };
      process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
      try {
        exitCode = await api.execStream(session.id, cmd, opts.timeout, (stream, data) =>
          (stream === 'stdout' ? process.stdout : process.stderr).write(data),
        );
        // The gateway writes audit events asynchronously: read until two reads 250 ms apart agree.
        let events: AuditEvent[] = [];
        for (let i = 0; i < 8; i++) {
          const next = (await api.call<{ events: AuditEvent[] }>('GET', `/v1/sessions/${session.id}/audit`))
            .events;
          if (i > 0 && next.length === events.length) break;
          events = next;
          await new Promise((r) => setTimeout(r, 250));
        }
        process.stderr.write(summarize(events));
      } finally {
        await cleanup();
      }
      process.exitCode = exitCode;
    },
  );

registerCredentialsCommands(program);
registerApprovalCommands(program);

const sessions = program.command('sessions').description('list, show and remove sessions');
sessions
  .command('ls')
  .option('--api <url>')
  .action(async (opts: { api?: string }) => {
    const list = await client(opts).call<SessionView[] | { sessions: SessionView[] }>('GET', '/v1/sessions');
    const rows = Array.isArray(list) ? list : list.sessions;
    for (const s of rows) process.stdout.write(`${s.id}\t${s.role}\t${s.status}\t${s.expiresAt}\n`);
  });
sessions
  .command('get')
  .argument('<id>')
  .option('--api <url>')
  .action(async (id: string, opts: { api?: string }) => {
    process.stdout.write(
      JSON.stringify(await client(opts).call('GET', `/v1/sessions/${id}`), null, 2) + '\n',
    );
  });
sessions
  .command('rm')
  .argument('<id>')
  .option('--api <url>')
  .action(async (id: string, opts: { api?: string }) => {
    await client(opts).call('DELETE', `/v1/sessions/${id}`);
    process.stdout.write(`removed ${id}\n`);
  });

const audit = program
  .command('audit')
  .description(
    "print a session's audit events as JSON lines (verify: check the trail's chain and signatures)",
  )
  .argument('<id>')
  .option('--api <url>')
  .option('-f, --follow', 'keep printing new events until the session ends')
  .action(async (id: string, opts: { api?: string; follow?: boolean }) => {
    const api = client(opts);
    let seen = 0;
    let ended = false;
    for (;;) {
      let events: AuditEvent[];
      try {
        events = (await api.call<{ events: AuditEvent[] }>('GET', `/v1/sessions/${id}/audit`)).events;
      } catch (err) {
        if (opts.follow && seen > 0) return; // the session ended
        throw err;
      }
      for (const e of events.slice(seen)) process.stdout.write(JSON.stringify(e) + '\n');
      seen = events.length;
      if (!opts.follow || ended) return;
      // --follow ends with the session (an ended session keeps its trail, so the audit route alone
      // never says so): one more read after it has ended picks up its last events.
      ended = await api.call<{ status: string }>('GET', `/v1/sessions/${id}`).then(
        (s) => s.status === 'stopped',
        (err: unknown) => {
          if (err instanceof CliError && err.message.includes('AIRLOCK_SESSION_NOT_FOUND')) return true;
          throw err;
        },
      );
      if (!ended) await new Promise((r) => setTimeout(r, 500));
    }
  });

program
  .command('images')
  .description('build the gateway and sandbox images')
  .command('build')
  .addOption(new Option('--offline', 'build the base image from this machine’s files (no registry)'))
  .action(async (opts: { offline?: boolean }) => {
    const { buildImages } = await import('../images/build.js');
    const { fileURLToPath } = await import('node:url');
    const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
    await buildImages({
      offline: opts.offline ?? false,
      repoRoot,
      log: (l) => process.stderr.write(l + '\n'),
    });
  });

const ca = program.command('ca').description('the installation CA used for HTTPS interception (docs/tls.md)');
ca.command('show')
  .description('print the CA certificate (PEM) sandboxes trust')
  .option('-c, --config <file>', 'YAML config file')
  .action(async (opts: { config?: string }) => {
    const cfg = loadConfig(opts.config);
    if (cfg.runtime.kind === 'kubernetes') {
      // The CA Secret of the installation (run inside the controller Pod: its identity may read it).
      const { KubernetesRuntime } = await import('../runtime/kubernetes/runtime.js');
      const runtime = new KubernetesRuntime(cfg);
      try {
        const m = await runtime.ensureTrust();
        if (!m) throw new CliError('HTTPS interception is off (gateway.tls.intercept: false)', 1);
        process.stdout.write(m.trustPem);
      } finally {
        await runtime.close();
      }
      return;
    }
    const { loadOrCreateCa } = await import('../pki/ca.js');
    const { join } = await import('node:path');
    process.stdout.write((await loadOrCreateCa(join(cfg.stateDir, 'ca'))).trustPem);
  });
ca.command('rotate')
  .description('create a new CA; the old one stays trusted for the overlap period')
  .option('-c, --config <file>', 'YAML config file')
  .option('--overlap-hours <hours>', 'how long the old CA stays trusted', (v) => Number(v), 168)
  .action(async (opts: { config?: string; overlapHours: number }) => {
    if (!Number.isFinite(opts.overlapHours) || opts.overlapHours < 0) {
      throw new CliError('--overlap-hours must be a non-negative number', 2);
    }
    const cfg = loadConfig(opts.config);
    const { X509Certificate } = await import('node:crypto');
    const overlapMs = opts.overlapHours * 3600 * 1000;
    if (cfg.runtime.kind === 'kubernetes') {
      const { KubernetesRuntime } = await import('../runtime/kubernetes/runtime.js');
      const runtime = new KubernetesRuntime(cfg);
      try {
        const m = await runtime.rotateCa(overlapMs);
        const cert = new X509Certificate(m.certPem);
        process.stdout.write(
          `new CA ${cert.fingerprint256} valid until ${cert.validTo}, stored in Secret ` +
            `${cfg.runtime.kubernetes.gatewayNamespace}/${cfg.runtime.kubernetes.ca.secretName}; the previous CA ` +
            `stays trusted for ${opts.overlapHours} h.\nThe sandbox trust bundle is updated; the gateways switch ` +
            'once the kubelet refreshes their mounted Secret (about a minute).\n',
        );
      } finally {
        await runtime.close();
      }
      return;
    }
    const { rotateCa } = await import('../pki/ca.js');
    const { join } = await import('node:path');
    const m = await rotateCa(join(cfg.stateDir, 'ca'), overlapMs);
    const cert = new X509Certificate(m.certPem);
    process.stdout.write(
      `new CA ${cert.fingerprint256} valid until ${cert.validTo}; the previous CA stays trusted for ` +
        `${opts.overlapHours} h.\nRestart "airlock serve": the gateway picks the new CA up, new sandboxes get the new bundle.\n`,
    );
  });

registerPolicyCommands(program);
registerAuditCommands(audit);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`airlock: config error: ${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof CliError) {
    process.stderr.write(`airlock: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof AirlockError) {
    process.stderr.write(`airlock: ${err.message} (${err.code})\n`);
    process.exit(1);
  }
  process.stderr.write(`airlock: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
