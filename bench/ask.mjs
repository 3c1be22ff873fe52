/**
 * Decision cost with `ask` rules present (docs/approvals.md): the same generated policy
 * (bench/policy/gen.mjs, 10,000 `p` lines) compiled twice — as generated, and with 500 ask rules
 * added on paths of their own (`/approve/...` under each rule's host) — and the same 200,000 requests,
 * none of which an ask rule matches, decided by both, in alternating rounds. The question is whether
 * the allow/deny path gets slower; the answer is the ratio of the medians.
 *
 * Usage: npm run build && node bench/ask.mjs [--rules N] [--rounds R]
 * Writes bench/results/ask-<timestamp>.json (gitignored) and prints the figures.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePolicy, makeRequests, rng } from './policy/gen.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const N = arg('--rules', 10_000);
const ROUNDS = arg('--rounds', 9);
const REQUESTS = 200_000;

const { compilePolicy } = await import(path.join(ROOT, 'dist/policy/load.js'));
const { CANONICAL_MODEL } = await import(path.join(ROOT, 'dist/policy/model.js'));

const policy = makePolicy(N, 42);
const rand = rng(7);
const extra = [];
for (let i = 0; i < 500; i++) {
  const r = policy.rules[Math.floor(rand() * policy.rules.length)];
  extra.push(`p, ${r.role}, ${r.host}, /approve/${i}/*, POST, ask`);
}
const plain = compilePolicy(CANONICAL_MODEL, policy.text);
const withAsk = compilePolicy(CANONICAL_MODEL, policy.text + extra.join('\n') + '\n');
const requests = makeRequests(policy, REQUESTS, 11);

// Same answers for every request (no ask rule matches them): the comparison is like for like.
for (const r of requests) {
  const a = plain.decide(r);
  const b = withAsk.decide(r);
  if (a.allowed !== b.allowed || a.rule !== b.rule)
    throw new Error(`answers differ for ${JSON.stringify(r)}`);
}

function round(p) {
  let sink = 0;
  // CPU time of this process (user + system), not wall time: other load on the machine does not count.
  const c0 = process.cpuUsage();
  for (const r of requests) if (p.decide(r).allowed) sink++;
  const c = process.cpuUsage(c0);
  const ns = ((c.user + c.system) * 1e3) / requests.length;
  return { ns, sink };
}

// Warm-up, then alternating rounds.
round(plain);
round(withAsk);
const a = [];
const b = [];
for (let i = 0; i < ROUNDS; i++) {
  if (i % 2 === 0) {
    a.push(round(plain).ns);
    b.push(round(withAsk).ns);
  } else {
    b.push(round(withAsk).ns);
    a.push(round(plain).ns);
  }
}
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const result = {
  when: new Date().toISOString(),
  node: process.version,
  rules: policy.pLines,
  askRules: extra.length,
  requests: REQUESTS,
  rounds: ROUNDS,
  nsPerDecision: { withoutAsk: a, withAsk: b },
  medianNs: { withoutAsk: median(a), withAsk: median(b) },
  ratio: median(b) / median(a),
  spread: { withoutAsk: [Math.min(...a), Math.max(...a)], withAsk: [Math.min(...b), Math.max(...b)] },
};
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
const file = path.join(ROOT, 'bench', 'results', `ask-${Date.now()}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(
  `${policy.pLines} rules, +${extra.length} ask rules; ${REQUESTS} allow/deny requests x ${ROUNDS} alternating rounds\n` +
    `median CPU ns/decision: without ask ${result.medianNs.withoutAsk.toFixed(1)}  with ask ${result.medianNs.withAsk.toFixed(1)}  ratio ${result.ratio.toFixed(3)}\n` +
    `spread (min-max): without ${result.spread.withoutAsk.map((x) => x.toFixed(1)).join('-')}  with ${result.spread.withAsk.map((x) => x.toFixed(1)).join('-')}\n` +
    `results: ${path.relative(ROOT, file)}`,
);
