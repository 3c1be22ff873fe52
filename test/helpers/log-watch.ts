/**
 * Error-level log lines of the control plane an e2e file runs in-process (issue 15: an error-level
 * line during a passing test is a finding). {@link watchedLogger} gives the pino logger to pass to
 * `startServer`; it prints as before (stdout) and records every line at level error (50) or above.
 * test/helpers/e2e-setup.ts (the e2e project's setup file) fails the file after its own hooks when a
 * recorded line is not declared with {@link expectErrorLog} and a reason.
 */
import { pino, type Logger } from 'pino';

interface Line {
  level: number;
  msg: string;
  line: string;
}

const lines: Line[] = [];
const expected: { msg: RegExp; why: string }[] = [];

/** A pino logger at `level` (warn by default) whose error-level lines are recorded. */
export function watchedLogger(level: pino.Level = 'warn'): Logger {
  return pino(
    { level },
    {
      write(s: string): void {
        process.stdout.write(s);
        try {
          const o = JSON.parse(s) as { level?: number; msg?: string };
          if ((o.level ?? 0) >= 50) lines.push({ level: o.level ?? 0, msg: o.msg ?? '', line: s.trim() });
        } catch {
          lines.push({ level: 50, msg: s, line: s.trim() }); // not JSON: nobody expected it
        }
      },
    },
  );
}

/** Declares an error-level line this file expects (its message matches `msg`), and why. */
export function expectErrorLog(msg: RegExp, why: string): void {
  if (!why) throw new Error('expectErrorLog needs the reason the line is expected');
  expected.push({ msg, why });
}

/** Recorded error-level lines that no {@link expectErrorLog} declared. */
export function unexpectedErrorLines(): string[] {
  return lines.filter((l) => !expected.some((e) => e.msg.test(l.msg))).map((l) => l.line);
}
