// The HTTP/1.1 differential fuzzer, bounded: the corpus (test/fuzz/corpus.ts)
// and a few dozen generated cases of a fixed seed, each sent through tsmesh
// (a client-side sidecar, mTLS, a server-side sidecar; and a server-side
// sidecar's PERMISSIVE inbound port in plain text), HAProxy and nginx side by
// side in a network namespace of the test's own, in front of a raw app that
// records every request it receives (README.md). Per class of case, on both
// of tsmesh's paths: tsmesh refuses whatever the stricter reference refuses
// (but for the exceptions of exceptions.ts, each with its reason), never
// waits where a reference has answered, and the app never receives a
// request tsmesh did not answer, nor one whose contents differ from the
// client's. Findings a fix under way is known to cover are reported as
// pending, one test per fix. Skipped, with the reason printed, where
// namespaces, HAProxy or nginx are missing. `npm run fuzz:h1 -- --cases N`
// runs more generated cases.
import assert from 'node:assert/strict';
import { CORPUS, marker, materialize } from './corpus.js';
import { EXCEPTIONS, PENDING_FIXES, pendingFixOf } from './exceptions.js';
import { generateCases } from './generate.js';
import { fuzzUnavailable, runHarness } from './harness.js';
import { assess, describeCase, judgeRun, table, type CaseResult, type Finding } from './verdict.js';

/** The generated cases of the bounded run: a fixed seed, so the run is the same each time (FUZZ_SEED picks another). */
const SEED = Number(process.env.FUZZ_SEED ?? 20261207);
const GENERATED = 40;
const BOUND_MS = 2500;
const QUIET_MS = 150;
const LANES = 3;

const corpus = materialize(CORPUS);
const cases = [...corpus, ...generateCases(SEED, GENERATED, corpus.length, marker)];
const classes = [...new Set(cases.map((c) => c.cls))];

const describeFinding = (f: Finding): string => `  ${f.kind}: ${describeCase(f.case)}\n    ${f.detail}`;

describe('HTTP/1.1 differential fuzzing: tsmesh beside HAProxy and nginx, in a network namespace', function () {
  this.timeout(150_000);
  let results: CaseResult[] = [];
  let failures: Finding[] = [];
  let pending: ReturnType<typeof assess>['pending'] = [];

  before(async function () {
    const reason = await fuzzUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const run = await runHarness({ cases, boundMs: BOUND_MS, quietMs: QUIET_MS, lanes: LANES });
    results = judgeRun(run);
    ({ failures, pending } = assess(results, EXCEPTIONS, pendingFixOf));
    console.log(`      ${cases.length} cases (${GENERATED} generated, seed ${SEED}) in ${(run.ms / 1000).toFixed(1)} s\n`);
    console.log(table(results).replace(/^/gm, '      '));
  });

  for (const cls of classes) {
    it(`${cls}: as strict as the stricter reference, no longer waits, the same request boundaries as the app`, function () {
      const mine = failures.filter((f) => f.case.cls === cls);
      const replay = cls === 'generated' ? `\n  (replay: npm run fuzz:h1 -- --seed ${SEED} --cases ${GENERATED} --only <case id>)` : '';
      assert.equal(mine.length, 0, `tsmesh falls short on ${mine.length} finding(s):\n${mine.map(describeFinding).join('\n')}${replay}`);
    });
  }

  describe('pending fixes (findings a change under way covers)', function () {
    for (const fix of PENDING_FIXES) {
      it(fix.reason, function () {
        const covered = pending.filter((p) => p.fix === fix).map((p) => p.finding);
        // A pending fix that covers nothing has landed: kept, it would hide the same finding coming back.
        assert.ok(covered.length > 0, 'no finding needs this pending fix any more: remove it from PENDING_FIXES in test/fuzz/exceptions.ts');
        console.log(`        pending, ${covered.length} finding(s): ${[...new Set(covered.map((f) => f.case.id))].join(', ')}`);
        this.skip();
      });
    }
  });
});
