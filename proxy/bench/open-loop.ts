// The fixed-rate load of `npm run bench:sidecar`, in its own process:
//   tsx proxy/bench/open-loop.ts URL RATE BODY_BYTES SLICE_MS
// Prints "ready", then takes commands on stdin, one per line:
//   warm | measure   POST BODY_BYTES to URL at RATE requests per second for
//                    SLICE_MS, wait for every answer, print "done" (a warm
//                    slice is not recorded), and after a measured slice its
//                    own p50, p90 and p99 as JSON on the same line;
//   end              print the recorded figures as one JSON line and exit.
// The benchmark gives the runs' clients slices in turn, one client at a time,
// so each run sees the same machine and none runs while another drains.
//
// Open loop: within a slice, requests leave on a fixed schedule, whatever the
// answers' pace, over keep-alive connections opened as needed. Each latency
// runs from the request's scheduled time, not from when it went out, so a
// stall counts against every request it held back (no coordinated omission);
// the client's own timer lag is in it too, the same in every run.
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { percentile } from './measure.js';

const [url, rateText, bodyText, sliceText] = process.argv.slice(2);
const rate = Number(rateText);
const bodyBytes = Number(bodyText);
const sliceMs = Number(sliceText);
if (!url || !(rate > 0) || !(bodyBytes >= 0) || !(sliceMs > 0)) {
  console.error('usage: open-loop.ts URL RATE BODY_BYTES SLICE_MS');
  process.exit(2);
}

const target = new URL(url);
// Idle connections close at 30 s, before the apps' 60 s keep-alive timeout
// (haproxy.ts): the client, not the app, ends them. A request sent just as
// the app closes its connection fails, and through an L4 path of two proxies
// that window lasts as long as the path, so phases longer than 60 s lost
// requests on the opaque TCP run.
const pool = new Pool(target.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
const body = Buffer.alloc(bodyBytes, 'x');
const headers = { 'content-type': 'application/octet-stream' };
const latencies: number[] = [];
let errors = 0;
let firstError: string | undefined;

/** One slice: every request sent on schedule and answered (or failed); resolves with the slice's latencies. */
function slice(recorded: boolean): Promise<number[]> {
  const own: number[] = [];
  const count = Math.round((rate * sliceMs) / 1000);
  const start = performance.now() + 5;
  let next = 0;
  let pending = 0;
  return new Promise((resolve) => {
    const finish = (due: number, error?: string): void => {
      if (recorded) {
        const ms = performance.now() - due;
        latencies.push(ms);
        own.push(ms);
        if (error !== undefined) {
          errors++;
          firstError ??= error;
        }
      }
      if (--pending === 0 && next === count) resolve(own);
    };
    const send = (due: number): void => {
      pending++;
      pool.request({ method: 'POST', path: target.pathname + target.search, headers, body }).then(
        async (res) => {
          await res.body.dump({ limit: Number.MAX_SAFE_INTEGER });
          finish(due, res.statusCode === 200 ? undefined : `HTTP ${res.statusCode}`);
        },
        (e: Error) => finish(due, e.message),
      );
    };
    const tick = (): void => {
      const now = performance.now();
      while (next < count && start + (next * 1000) / rate <= now) send(start + (next++ * 1000) / rate);
      if (next < count) setTimeout(tick, Math.max(0, start + (next * 1000) / rate - performance.now()));
    };
    tick();
  });
}

console.log('ready');
for await (const line of createInterface({ input: process.stdin })) {
  const command = line.trim();
  if (command === 'warm' || command === 'measure') {
    const own = await slice(command === 'measure');
    if (command === 'warm') console.log('done');
    else {
      const sorted = Float64Array.from(own).sort();
      console.log(`done ${JSON.stringify({ p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) })}`);
    }
  } else if (command === 'end') {
    break;
  } else if (command !== '') {
    console.error(`open-loop: unknown command ${JSON.stringify(command)}; expected warm, measure or end`);
    process.exitCode = 2;
    break;
  }
}
const sorted = Float64Array.from(latencies).sort();
console.log(
  JSON.stringify({
    requests: sorted.length,
    errors,
    firstError,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  }),
);
await pool.close();
