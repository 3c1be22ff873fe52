/**
 * Fuzzing helpers (docs/reliability.md "Fuzzing"): the seed corpus in test/fuzz/corpus/<target>.jsonl
 * (one JSON value a line: inputs that once mattered — regressions, edge cases — fed to every run
 * before the generated ones) and the run budget.
 *
 * Why fast-check and not coverage-guided Jazzer.js: @jazzer.js/core 4.0.0 installs from npm, but its
 * prebuilt libFuzzer addon needs glibc 2.38 (Debian 12 here has 2.36) and building it needs clang and
 * a libFuzzer download; so the parsers are fuzzed with fast-check's generators instead: structured
 * inputs (valid forms mutated) plus arbitrary strings, with model-based properties.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The seeds of one target: every line of test/fuzz/corpus/`name`.jsonl parsed as JSON. */
export function corpus<T = string>(name: string): T[] {
  const file = path.resolve('test/fuzz/corpus', `${name}.jsonl`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/**
 * Runs per property: `base` × AIRLOCK_FUZZ_SCALE (default 1; CI's budget: every fuzz file of
 * test/unit/fuzz together in well under a minute on 2 cores). A longer local hunt:
 * `AIRLOCK_FUZZ_SCALE=50 npx vitest run --project unit test/unit/fuzz`.
 */
export function runs(base: number): number {
  const scale = Number(process.env.AIRLOCK_FUZZ_SCALE ?? '1');
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}
