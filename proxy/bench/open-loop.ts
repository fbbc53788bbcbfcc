// The fixed-rate load of `npm run bench:sidecar`, in its own process:
//   tsx proxy/bench/open-loop.ts URL RATE WARMUP_SECONDS SECONDS BODY_BYTES
// POSTs BODY_BYTES to URL at RATE requests per second on a fixed schedule
// (open loop: a slow answer never delays the next request), over keep-alive
// connections opened as needed. Each latency runs from the request's
// scheduled time, not from when it went out, so a stall counts against every
// request it held back (no coordinated omission); the client's own timer lag
// is in it too, the same in every run. Prints "measure-start" when the
// measured part begins, "measure-end" when its last answer is in, then one
// JSON line with the figures.
import { Pool } from 'undici';
import { percentile } from './measure.js';

const [url, rateText, warmText, secondsText, bodyText] = process.argv.slice(2);
const rate = Number(rateText);
const warmUp = Number(warmText);
const seconds = Number(secondsText);
const bodyBytes = Number(bodyText);
if (!url || !(rate > 0) || !(warmUp >= 0) || !(seconds > 0) || !(bodyBytes >= 0)) {
  console.error('usage: open-loop.ts URL RATE WARMUP_SECONDS SECONDS BODY_BYTES');
  process.exit(2);
}

const target = new URL(url);
const pool = new Pool(target.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
const body = Buffer.alloc(bodyBytes, 'x');
const headers = { 'content-type': 'application/octet-stream' };

interface Phase {
  latencies: Float64Array;
  done: number;
  ok: number;
  errors: number;
  firstError?: string;
  lastAnswer: number;
}

/** Sends `count` requests at `rate`/s from `start` (a performance.now() time). */
function run(count: number, start: number): Promise<Phase> {
  const phase: Phase = { latencies: new Float64Array(count), done: 0, ok: 0, errors: 0, lastAnswer: start };
  const interval = 1000 / rate;
  return new Promise((resolve) => {
    let next = 0;
    const finish = (i: number, due: number, error?: string): void => {
      const now = performance.now();
      phase.latencies[i] = now - due;
      phase.lastAnswer = now;
      if (error === undefined) phase.ok++;
      else {
        phase.errors++;
        phase.firstError ??= error;
      }
      if (++phase.done === count) resolve(phase);
    };
    const send = (i: number, due: number): void => {
      pool.request({ method: 'POST', path: target.pathname + target.search, headers, body }).then(
        async (res) => {
          await res.body.dump({ limit: Number.MAX_SAFE_INTEGER });
          finish(i, due, res.statusCode === 200 ? undefined : `HTTP ${res.statusCode}`);
        },
        (e: Error) => finish(i, due, e.message),
      );
    };
    const tick = (): void => {
      const now = performance.now();
      while (next < count && start + next * interval <= now) {
        send(next, start + next * interval);
        next++;
      }
      if (next < count) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
    };
    tick();
  });
}

if (warmUp > 0) await run(Math.round(rate * warmUp), performance.now());
console.log('measure-start');
const start = performance.now();
const measured = await run(Math.round(rate * seconds), start);
console.log('measure-end');
const sorted = measured.latencies.sort();
console.log(
  JSON.stringify({
    requests: measured.done,
    ok: measured.ok,
    errors: measured.errors,
    firstError: measured.firstError,
    achievedRate: measured.ok / ((measured.lastAnswer - start) / 1000),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted[sorted.length - 1],
  }),
);
await pool.close();
