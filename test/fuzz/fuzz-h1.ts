// npm run fuzz:h1 -- [--cases N] [--seed S] [--only REGEX] [--no-corpus]
//                     [--bound MS] [--lanes K] [--json FILE]
// The differential fuzzer at length: the corpus and N generated cases
// (default 200) of seed S (default: a new one, printed), through tsmesh,
// HAProxy and nginx in a network namespace of its own (root). Prints the
// table of verdicts, then every finding with the case's bytes; exits 1 when
// tsmesh falls short on any finding no pending fix covers. A failure is
// replayed with the seed and the case's id: --seed S --cases N --only ID.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CORPUS, marker, materialize } from './corpus.js';
import { EXCEPTIONS, pendingFixOf } from './exceptions.js';
import { generateCases } from './generate.js';
import { fuzzUnavailable, runHarness } from './harness.js';
import { assess, describeCase, judgeRun, table } from './verdict.js';

const USAGE = 'usage: npm run fuzz:h1 -- [--cases N] [--seed S] [--only REGEX] [--no-corpus] [--bound MS] [--lanes K] [--json FILE]';

function fail(message: string): never {
  console.error(`fuzz:h1: ${message}\n${USAGE}`);
  process.exit(2);
}

function count(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) fail(`--${name} takes a whole number of at least ${min}, not ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        cases: { type: 'string' },
        seed: { type: 'string' },
        only: { type: 'string' },
        'no-corpus': { type: 'boolean' },
        bound: { type: 'string' },
        lanes: { type: 'string' },
        json: { type: 'string' },
      },
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  const generated = count('cases', values.cases, 200, 0);
  const seed = count('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 0);
  let only: RegExp | undefined;
  try {
    only = values.only === undefined ? undefined : new RegExp(values.only);
  } catch (e) {
    fail(`--only: ${(e as Error).message}`);
  }
  const corpus = values['no-corpus'] ? [] : materialize(CORPUS);
  const cases = [...corpus, ...generateCases(seed, generated, corpus.length, marker)].filter((c) => only === undefined || only.test(c.id));
  if (cases.length === 0) fail('no case matches --only');

  const reason = await fuzzUnavailable();
  if (reason !== undefined) {
    console.error(`fuzz:h1: cannot run: ${reason}`);
    return 1;
  }
  console.log(`fuzz:h1: seed ${seed}, ${cases.length} cases`);
  const run = await runHarness({ cases, boundMs: count('bound', values.bound, 2500, 100), quietMs: 150, lanes: count('lanes', values.lanes, 3, 1), log: (l) => console.log(`fuzz:h1: ${l}`) });
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(run));
  const results = judgeRun(run);
  console.log(`\n${table(results)}\n`);
  const { failures, pending } = assess(results, EXCEPTIONS, pendingFixOf);
  const fixes = new Map<string, Set<string>>();
  for (const p of pending) fixes.set(p.fix.reason, (fixes.get(p.fix.reason) ?? new Set()).add(p.finding.case.id));
  for (const [why, ids] of fixes) console.log(`pending (${ids.size} cases): ${why}`);
  for (const f of failures) console.log(`\n${f.kind}: ${describeCase(f.case)}\n  ${f.detail}`);
  console.log(`\nfuzz:h1: ${cases.length} cases in ${(run.ms / 1000).toFixed(1)} s, seed ${seed}: ${failures.length} findings, ${pending.length} pending`);
  if (failures.length > 0) console.log(`fuzz:h1: replay one with: npm run fuzz:h1 -- --seed ${seed} --cases ${generated} --only '<case id>'`);
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`fuzz:h1: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  },
);
