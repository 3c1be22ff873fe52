/**
 * Fuzzing the proxy's request line and header parsing (src/gateway/target.ts, src/gateway/headers.ts)
 * and the CONNECT / SNI host checks (parseConnectTarget, normalizeHost as tunnel.ts's SNICallback
 * uses it), issue 15 section 3. Properties:
 * - any input either parses or is refused with RequestValidationError (any other throw is a crash);
 * - a parsed target is canonical: rebuilding the request line from it parses to the same target;
 * - the Host header must name the target's host and port (any spelling of the same authority is
 *   accepted, any other host refused) — DESIGN.md property 7;
 * - framing (Content-Length / Transfer-Encoding) is judged exactly as a small model says;
 * - a CONNECT's SNI is accepted exactly when it names the CONNECT host in any spelling.
 * Seeds: test/fuzz/corpus/request-target.jsonl, connect.jsonl.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestValidationError } from '../../../src/errors.js';
import { framingProblem } from '../../../src/gateway/headers.js';
import {
  connectUrl,
  parseAbsoluteTarget,
  parseConnectTarget,
  parsePlainRequest,
  type Target,
} from '../../../src/gateway/target.js';
import { normalizeHost } from '../../../src/request/normalize.js';
import { corpus, runs } from './corpus.js';

function attempt<T>(fn: () => T): T | 'refused' {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof RequestValidationError)) throw err;
    return 'refused';
  }
}

const hostLabel = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const dnsHost = fc.array(hostLabel, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const host = fc.oneof(
  { weight: 5, arbitrary: dnsHost },
  { weight: 1, arbitrary: fc.ipV4() },
  { weight: 1, arbitrary: fc.ipV6().map((h) => `[${h}]`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('münchen.test', 'xn--mnchen-3ya.test', 'localhost', '127.1', '0x7f.1'),
  },
);
const port = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 0, max: 70000 }),
  fc.constantFrom(80, 443, 8080),
);
const junk = fc.constantFrom(
  '',
  '@',
  'user:pw@',
  '#frag',
  '\\',
  ' ',
  '%2F',
  '..',
  '\r\n',
  ':',
  '[',
  ']',
  '%00',
);

/** Request lines near the valid form: parts drawn from valid pieces and from junk. */
const absoluteUrl = fc
  .tuple(
    fc.constantFrom('http://', 'HTTP://', 'https://', 'ftp://', 'http:/', ''),
    junk,
    host,
    port,
    fc.oneof(
      fc.constant(''),
      fc.string({ maxLength: 25 }).map((s) => `/${s}`),
    ),
    fc.oneof(
      fc.constant(''),
      fc.string({ maxLength: 10 }).map((s) => `?${s}`),
    ),
    junk,
  )
  .map(
    ([scheme, j1, h, p, path, q, j2]) =>
      `${scheme}${j1}${h}${p === undefined ? '' : `:${p}`}${path}${q}${j2}`,
  );

function rebuilt(t: Target): string {
  return `http://${t.authority}${t.path}${t.query}`;
}

describe('fuzz: request line, Host header, framing', () => {
  it('absolute-form targets: refused with RequestValidationError or canonical (rebuilt line parses the same)', () => {
    const seeds = corpus('request-target').map((s) => [s] as [string]);
    fc.assert(
      fc.property(
        fc.oneof(
          absoluteUrl,
          fc.string({ maxLength: 60 }).map((s) => `http://${s}`),
        ),
        (url) => {
          const t = attempt(() => parseAbsoluteTarget(url));
          if (t === 'refused') return;
          expect(t.scheme).toBe('http');
          expect(t.port).toBeGreaterThanOrEqual(1);
          expect(t.port).toBeLessThanOrEqual(65535);
          expect(t.host).toBe(t.host.toLowerCase());
          expect(t.host.endsWith('.')).toBe(false);
          expect(parseAbsoluteTarget(rebuilt(t))).toEqual(t);
          // The query is never part of what the policy sees.
          expect(t.path.includes('?')).toBe(false);
        },
      ),
      { numRuns: runs(4000), examples: seeds },
    );
  });

  /** Spellings of the same authority a client may put in its Host header. */
  const sameAuthority = (t: Target): fc.Arbitrary<string> =>
    fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()).map(([upper, dot, explicitPort]) => {
      const v6 = t.host.includes(':');
      let h = v6 ? `[${t.host}]` : t.host;
      if (upper) h = h.toUpperCase();
      if (dot && !v6 && !/^[\d.]+$/.test(t.host)) h += '.';
      return explicitPort || t.port !== 80 ? `${h}:${t.port}` : h;
    });

  it('the Host header must name the target: same authority accepted, another refused', () => {
    fc.assert(
      fc.property(
        fc
          .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }), host)
          .filter(
            ([h, , other]) => attempt(() => parseAbsoluteTarget(`http://${h}/`)) !== 'refused' && other !== h,
          )
          .chain(([h, p, other]) => {
            const t = parseAbsoluteTarget(`http://${h}${p === undefined ? '' : `:${p}`}/x`);
            return fc.tuple(fc.constant(t), sameAuthority(t), fc.constant(other));
          }),
        ([t, same, other]) => {
          const line = `http://${t.authority}/x`;
          expect(parsePlainRequest(line, same, ['Host', same])).toEqual(t);
          const o = attempt(() => parseAbsoluteTarget(`http://${other}:${t.port}/`));
          if (o !== 'refused' && (o.host !== t.host || o.port !== t.port))
            expect(() => parsePlainRequest(line, `${other}:${t.port}`, ['Host', other])).toThrow(
              RequestValidationError,
            );
        },
      ),
      { numRuns: runs(2000) },
    );
  });

  it('framing: Content-Length / Transfer-Encoding judged as the model says', () => {
    const header = fc.oneof(
      fc.tuple(
        fc.constantFrom('Content-Length', 'content-length', 'CONTENT-LENGTH'),
        fc.constantFrom('0', '5', ' 5', '5, 5'),
      ),
      fc.tuple(
        fc.constantFrom('Transfer-Encoding', 'transfer-encoding'),
        fc.constantFrom(
          'chunked',
          'Chunked',
          ' chunked ',
          'gzip, chunked',
          'identity',
          'chunked, chunked',
          '',
        ),
      ),
      fc.tuple(
        fc.constantFrom('X-Other', 'Host', 'Content-Type', 'Transfer-Encodings'),
        fc.string({ maxLength: 5 }),
      ),
    );
    fc.assert(
      fc.property(fc.array(header, { maxLength: 5 }), (headers) => {
        const raw = headers.flat();
        const cl = headers.filter(([n]) => n.toLowerCase() === 'content-length').length;
        const tes = headers
          .filter(([n]) => n.toLowerCase() === 'transfer-encoding')
          .map(([, v]) => v.trim().toLowerCase());
        const ok =
          cl <= 1 &&
          tes.length <= 1 &&
          !(cl === 1 && tes.length === 1) &&
          (tes.length === 0 || tes[0] === 'chunked');
        expect(framingProblem(raw) === null, JSON.stringify(headers)).toBe(ok);
      }),
      { numRuns: runs(3000) },
    );
  });
});

describe('fuzz: CONNECT authority and SNI', () => {
  const authority = fc.oneof(
    fc.tuple(host, port).map(([h, p]) => `${h}${p === undefined ? '' : `:${p}`}`),
    fc.string({ maxLength: 40 }),
  );

  it('CONNECT authorities: refused with RequestValidationError, or host:port that round-trips', () => {
    const seeds = corpus('connect').map((s) => [s] as [string]);
    fc.assert(
      fc.property(authority, (a) => {
        const c = attempt(() => parseConnectTarget(a));
        if (c === 'refused') return;
        expect(/:\d+$/.test(a)).toBe(true); // a port is required
        const again = parseConnectTarget(connectUrl(c.host, c.port).slice('https://'.length));
        expect(again).toEqual(c);
      }),
      { numRuns: runs(4000), examples: seeds },
    );
  });

  const validHost = dnsHost.filter((h) => attempt(() => normalizeHost(h)) !== 'refused');

  /** tunnel.ts's SNICallback decision, as written there. */
  function sniAccepted(servername: string, connectHost: string): boolean {
    let name: string;
    try {
      name = normalizeHost(servername);
    } catch {
      name = servername;
    }
    return name === connectHost;
  }

  it('SNI is accepted exactly when it names the CONNECT host (any case, a trailing dot)', () => {
    fc.assert(
      fc.property(validHost, validHost, fc.boolean(), fc.boolean(), (h, other, upper, dot) => {
        const c = parseConnectTarget(`${h}:443`);
        const spelled = (upper ? h.toUpperCase() : h) + (dot ? '.' : '');
        expect(sniAccepted(spelled, c.host)).toBe(true);
        // Another name (`0.0` and `0` are both 0.0.0.0: the same host) is refused.
        if (normalizeHost(other) !== c.host) expect(sniAccepted(other, c.host)).toBe(false);
        // Names a TLS client could send that are not hosts never match a real CONNECT host.
        for (const bad of [`${h}\u0000`, `${h}:443`, `*.${h}`, `${h}..`, `%${h}`])
          expect(sniAccepted(bad, c.host)).toBe(false);
      }),
      { numRuns: runs(2000) },
    );
  });
});

describe('fuzz regressions (each a counterexample a run found)', () => {
  // SNI property, seed -423643420: ["0","a",false,false]. normalizeHost stripped one trailing dot and
  // handed `0.` to the WHATWG IPv4 parser, which took it as 0.0.0.0: a name with two trailing dots
  // was accepted for numeric hosts while `a.test..` was refused (empty label). Now refused alike.
  it.each(['0..', '127.1..', '10.0.0.1..'])('%s is an empty label, not an address', (h) => {
    expect(() => normalizeHost(h)).toThrow(/empty label/);
    expect(() => parseConnectTarget(`${h}:443`)).toThrow(RequestValidationError);
    expect(() => parseAbsoluteTarget(`http://${h}/`)).toThrow(RequestValidationError);
  });
});
