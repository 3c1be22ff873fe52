/**
 * A real OpenTelemetry Collector (the collector core's otelcol with the OTLP receiver and the debug
 * exporter, built by scripts/otel-collector.sh) on loopback, port 0-style (a free port), whose debug
 * output (stderr, verbosity detailed) is parsed back into log records for assertions.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './upstreams.js';

/** One log record as the debug exporter printed it. */
export interface CollectedLog {
  resource: Record<string, string>;
  severityText: string;
  severityNumber: string;
  eventName: string;
  timestamp: string;
  /** The body, parsed from `Map({...})` JSON (null when the body was not a map). */
  body: Record<string, unknown> | null;
  /** Attribute name → printed value (`Str(allow)`, `Int(4002)`). */
  attributes: Record<string, string>;
}

/** One span as the debug exporter printed it. */
export interface CollectedSpan {
  name: string;
  /** `Client`, `Server`, … */
  kind: string;
  startTime: string;
  endTime: string;
  /** `Unset`, `Ok` or `Error`. */
  statusCode: string;
  statusMessage: string;
  attributes: Record<string, string>;
}

export interface Collector {
  /** OTLP/HTTP base URL (`http://127.0.0.1:PORT`). */
  endpoint: string;
  /** Every log record received so far. */
  logs(): CollectedLog[];
  /** Every span received so far. */
  spans(): CollectedSpan[];
  /** Waits (bounded) until `ready(logs)` holds. @throws with the count seen on timeout. */
  until(ready: (logs: CollectedLog[]) => boolean, timeoutMs?: number): Promise<CollectedLog[]>;
  stop(): Promise<void>;
}

/** Path of the built collector: builds it when missing (minutes when cold). */
export function collectorBinary(): string {
  const out = execFileSync('bash', ['scripts/otel-collector.sh'], { encoding: 'utf8', timeout: 900_000 });
  const m = /OTELCOL=(.+)/.exec(out);
  if (!m?.[1]) throw new Error(`scripts/otel-collector.sh printed no OTELCOL= line: ${out}`);
  return m[1];
}

/** Parses the debug exporter's detailed output into records. */
export function parseDebugOutput(text: string): CollectedLog[] {
  const logs: CollectedLog[] = [];
  let resource: Record<string, string> = {};
  let current: CollectedLog | null = null;
  let section: 'resource' | 'attributes' | null = null;
  for (const line of text.split('\n')) {
    if (line.includes('ResourceLog #')) {
      resource = {};
      section = null;
      continue;
    }
    if (line.startsWith('Resource attributes:')) {
      section = 'resource';
      continue;
    }
    if (line.startsWith('LogRecord #')) {
      current = {
        resource,
        severityText: '',
        severityNumber: '',
        eventName: '',
        timestamp: '',
        body: null,
        attributes: {},
      };
      logs.push(current);
      section = null;
      continue;
    }
    if (line.startsWith('Attributes:')) {
      section = 'attributes';
      continue;
    }
    const attr = /^\s+-> ([^:]+): (.*)$/.exec(line);
    if (attr && section === 'resource') {
      resource[attr[1]!] = attr[2]!.replace(/^Str\((.*)\)$/, '$1');
      continue;
    }
    if (attr && section === 'attributes' && current) {
      current.attributes[attr[1]!] = attr[2]!;
      continue;
    }
    if (!current) continue;
    const field = /^(SeverityText|SeverityNumber|EventName|Timestamp|Body): (.*)$/.exec(line);
    if (!field) continue;
    section = null;
    const [, key, value] = field as unknown as [string, string, string];
    if (key === 'SeverityText') current.severityText = value;
    else if (key === 'SeverityNumber') current.severityNumber = value;
    else if (key === 'EventName') current.eventName = value;
    else if (key === 'Timestamp') current.timestamp = value;
    else {
      const m = /^Map\((.*)\)$/.exec(value);
      current.body = m ? (JSON.parse(m[1]!) as Record<string, unknown>) : null;
    }
  }
  return logs;
}

/** Parses the debug exporter's detailed span output. */
export function parseDebugSpans(text: string): CollectedSpan[] {
  const spans: CollectedSpan[] = [];
  let current: CollectedSpan | null = null;
  let inAttributes = false;
  for (const line of text.split('\n')) {
    if (/^Span #\d+/.test(line)) {
      current = {
        name: '',
        kind: '',
        startTime: '',
        endTime: '',
        statusCode: '',
        statusMessage: '',
        attributes: {},
      };
      spans.push(current);
      inAttributes = false;
      continue;
    }
    if (!current) continue;
    if (
      /^(ResourceSpans|ResourceLog|ScopeSpans|LogRecord) /.test(line) ||
      /^(ResourceSpans|ScopeSpans) #/.test(line)
    ) {
      current = null;
      continue;
    }
    if (line.startsWith('Attributes:')) {
      inAttributes = true;
      continue;
    }
    const attr = /^\s+-> ([^:]+): (.*)$/.exec(line);
    if (attr && inAttributes) {
      current.attributes[attr[1]!] = attr[2]!;
      continue;
    }
    const field = /^\s+(Name|Kind|Start time|End time|Status code|Status message)\s*: ?(.*)$/.exec(line);
    if (!field) continue;
    const value = field[2]!.trim();
    if (field[1] === 'Name') current.name = value;
    else if (field[1] === 'Kind') current.kind = value;
    else if (field[1] === 'Start time') current.startTime = value;
    else if (field[1] === 'End time') current.endTime = value;
    else if (field[1] === 'Status code') current.statusCode = value;
    else current.statusMessage = value;
  }
  return spans;
}

/** Starts the collector on a free loopback port; retries start-up on a port taken meanwhile. */
export async function startCollector(): Promise<Collector> {
  const bin = collectorBinary();
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-otelcol-'));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = path.join(dir, 'config.yaml');
    writeFileSync(
      config,
      [
        'receivers:',
        '  otlp:',
        '    protocols:',
        '      http:',
        `        endpoint: 127.0.0.1:${port}`,
        'exporters:',
        '  debug:',
        '    verbosity: detailed',
        'service:',
        '  telemetry:',
        '    metrics:',
        '      level: none',
        '  pipelines:',
        '    logs:',
        '      receivers: [otlp]',
        '      exporters: [debug]',
        '    traces:',
        '      receivers: [otlp]',
        '      exporters: [debug]',
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(bin, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setInterval(() => {
        if (stderr.includes('Everything is ready')) done(true);
      }, 50);
      const giveUp = setTimeout(() => done(false), 30_000);
      child.once('exit', () => done(false));
      function done(ok: boolean): void {
        clearInterval(timer);
        clearTimeout(giveUp);
        resolve(ok);
      }
    });
    if (!ready) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`the OpenTelemetry Collector did not start: ${stderr.slice(-2000)}`);
    }
    const logs = (): CollectedLog[] => parseDebugOutput(stderr);
    return {
      endpoint: `http://127.0.0.1:${port}`,
      logs,
      spans: () => parseDebugSpans(stderr),
      async until(check, timeoutMs = 15_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const now = logs();
          if (check(now)) return now;
          if (Date.now() > deadline)
            throw new Error(`collector: condition not met within ${timeoutMs} ms (${now.length} records)`);
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async stop() {
        if (child.exitCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
