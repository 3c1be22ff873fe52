import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ApiErrorCodes, statusForCode } from '../../src/api/problem.js';
import { ErrorCodes, GatewayAnswers } from '../../src/errors.js';

const doc = readFileSync(fileURLToPath(new URL('../../docs/errors.md', import.meta.url)), 'utf8');

/** Rows of the table under `## heading`: `{ code, status }` from its first two columns. */
function tableRows(heading: string): Array<{ code: string; status: string }> {
  const start = doc.indexOf(`\n## ${heading}\n`);
  expect(start, `docs/errors.md has a "## ${heading}" section`).toBeGreaterThanOrEqual(0);
  const rest = doc.slice(start + heading.length + 5);
  const end = rest.indexOf('\n## ');
  const section = end === -1 ? rest : rest.slice(0, end);
  const rows: Array<{ code: string; status: string }> = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    // A table row splits into ['', cell1, cell2, ..., '']; skip the header and the --- rule.
    if (cells.length < 4 || cells[1] === 'code' || cells[1]?.startsWith('---')) continue;
    rows.push({ code: (cells[1] ?? '').replace(/`/g, ''), status: cells[2] ?? '' });
  }
  return rows;
}

describe('docs/errors.md', () => {
  const sections: Array<[string, Record<string, string>]> = [
    ['Error codes', ErrorCodes],
    ['API-only codes', ApiErrorCodes],
  ];

  for (const [heading, codes] of sections) {
    describe(heading, () => {
      const rows = tableRows(heading);
      const documented = rows.map((r) => r.code);

      it('documents every code, once', () => {
        for (const code of Object.values(codes)) expect(documented, `row for ${code}`).toContain(code);
        expect(new Set(documented).size).toBe(documented.length);
      });

      it('documents no code the source does not define', () => {
        const defined = new Set(Object.values(codes));
        for (const code of documented)
          expect(defined.has(code), `${code} is defined in the source`).toBe(true);
      });

      it('states the HTTP status the API actually answers with', () => {
        for (const { code, status } of rows) {
          const n = /^\d{3}/.exec(status)?.[0];
          if (n) expect(Number(n), code).toBe(statusForCode(code));
          else expect(statusForCode(code), `${code} is not an API answer`).toBe(500);
        }
      });
    });
  }
});

describe('docs/errors.md: Gateway answers', () => {
  const start = doc.indexOf('\n## Gateway answers\n');
  const section = doc.slice(start);
  const rows = section
    .split('\n')
    .map((line) => line.split('|').map((c) => c.trim()))
    .filter((cells) => cells.length >= 6 && cells[1]!.startsWith('`'))
    .map((cells) => ({ error: cells[1]!.replace(/`/g, ''), status: Number(cells[2]), decision: cells[3] }));

  it('has the section', () => expect(start).toBeGreaterThanOrEqual(0));

  it('lists every gateway answer once, with the status and x-airlock-decision the gateway sends', () => {
    expect(rows.map((r) => r.error).sort()).toEqual(Object.keys(GatewayAnswers).sort());
    for (const r of rows) {
      const answer = GatewayAnswers[r.error as keyof typeof GatewayAnswers];
      expect({ status: r.status, decision: r.decision }, r.error).toEqual(answer);
    }
  });
});
