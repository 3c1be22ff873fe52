/**
 * Decision cost with `ask` rules present (docs/approvals.md): the same generated policy
 * (bench/policy/gen.mjs, 10,000 `p` lines) compiled three times — as generated; with 500 ask rules
 * (POST, paths of their own) on the hosts of existing rules, so that many requests hit a (role, host)
 * with ask rules; and with the 500 ask rules on hosts no request uses — and the same 200,000
 * requests, none of which an ask rule matches, decided by all three in rotating rounds. The question
 * is what ask rules cost the allow/deny path; the answers are the ratios of the medians.
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
const sameHosts = [];
const otherHosts = [];
for (let i = 0; i < 500; i++) {
  const r = policy.rules[Math.floor(rand() * policy.rules.length)];
  sameHosts.push(`p, ${r.role}, ${r.host}, /approve/${i}/*, POST, ask`);
  otherHosts.push(`p, ${r.role}, approvals${i}.example, /approve/${i}/*, POST, ask`);
}
const plain = compilePolicy(CANONICAL_MODEL, policy.text);
const same = compilePolicy(CANONICAL_MODEL, policy.text + sameHosts.join('\n') + '\n');
const other = compilePolicy(CANONICAL_MODEL, policy.text + otherHosts.join('\n') + '\n');
const requests = makeRequests(policy, REQUESTS, 11);

// Same answers for every request (no ask rule matches them): the comparison is like for like.
for (const r of requests) {
  const a = plain.decide(r);
  for (const p of [same, other]) {
    const b = p.decide(r);
    if (a.allowed !== b.allowed || a.rule !== b.rule)
      throw new Error(`answers differ for ${JSON.stringify(r)}`);
  }
}

function round(p) {
  let sink = 0;
  // CPU time of this process (user + system), not wall time: other load on the machine does not count.
  const c0 = process.cpuUsage();
  for (const r of requests) if (p.decide(r).allowed) sink++;
  const c = process.cpuUsage(c0);
  return { ns: ((c.user + c.system) * 1e3) / requests.length, sink };
}

const variants = [
  { name: 'withoutAsk', policy: plain, ns: [] },
  { name: 'askSameHosts', policy: same, ns: [] },
  { name: 'askOtherHosts', policy: other, ns: [] },
];
for (const v of variants) round(v.policy); // warm-up
// Rotating order, so no variant always runs first or last in a round.
for (let i = 0; i < ROUNDS; i++)
  for (let k = 0; k < variants.length; k++) {
    const v = variants[(i + k) % variants.length];
    v.ns.push(round(v.policy).ns);
  }
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const m = Object.fromEntries(variants.map((v) => [v.name, median(v.ns)]));
const result = {
  when: new Date().toISOString(),
  node: process.version,
  rules: policy.pLines,
  askRules: sameHosts.length,
  requests: REQUESTS,
  rounds: ROUNDS,
  cpuNsPerDecision: Object.fromEntries(variants.map((v) => [v.name, v.ns])),
  medianCpuNs: m,
  ratioSameHosts: m.askSameHosts / m.withoutAsk,
  ratioOtherHosts: m.askOtherHosts / m.withoutAsk,
};
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
const file = path.join(ROOT, 'bench', 'results', `ask-${Date.now()}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
const spread = (xs) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
console.log(
  `${policy.pLines} rules, +${sameHosts.length} ask rules; ${REQUESTS} allow/deny requests x ${ROUNDS} rotating rounds (CPU ns per decision, median [min-max])\n` +
    variants
      .map((v) => `  ${v.name.padEnd(14)} ${m[v.name].toFixed(0).padStart(6)}  [${spread(v.ns)}]`)
      .join('\n') +
    `\n  ratio, ask rules on the same hosts: ${result.ratioSameHosts.toFixed(3)}; on other hosts: ${result.ratioOtherHosts.toFixed(3)}\n` +
    `results: ${path.relative(ROOT, file)}`,
);
