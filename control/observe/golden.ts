// Golden signals from two scrapes of a proxy's counters: the increase of each
// series between them (a reset counts from zero, as Prometheus' increase()
// does), requests per second, success rate, and latency quantiles read from
// histogram bucket increases with Prometheus' histogram_quantile rule.
import type { Sample } from '../../lib/prom-text.js';

/** What a group of requests looked like over a window; null where nothing was seen. */
export interface GoldenSignals {
  /** Requests in the window. */
  requests: number;
  rps: number;
  /** Share of responses that were not 5xx (4xx is the caller's mistake, as Linkerd counts it); of gRPC calls, those whose status was OK. */
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

function seriesKey(s: Sample): string {
  return `${s.name}{${Object.entries(s.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',')}}`;
}

/**
 * The increase of every series of `names` from `before` to `now`. A series
 * new since `before` counts from zero; one lower than before was reset (the
 * proxy restarted) and counts from zero too.
 */
export function counterIncreases(before: readonly Sample[], now: readonly Sample[], names: ReadonlySet<string>): Sample[] {
  const old = new Map(before.filter((s) => names.has(s.name)).map((s) => [seriesKey(s), s.value]));
  return now
    .filter((s) => names.has(s.name))
    .map((s) => {
      const was = old.get(seriesKey(s)) ?? 0;
      return { ...s, value: s.value >= was ? s.value - was : s.value };
    });
}

/** Cumulative bucket counts by upper bound (`le`, Infinity for +Inf), summed over series. */
export type Buckets = Map<number, number>;

export function addBuckets(into: Buckets, samples: readonly Sample[]): void {
  for (const s of samples) {
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    if (Number.isNaN(le)) continue;
    into.set(le, (into.get(le) ?? 0) + s.value);
  }
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the
 * bucket it falls in (the first bucket starts at 0). A quantile in the +Inf
 * bucket is the highest finite bound: the histogram knows no more.
 */
export function histogramQuantile(q: number, buckets: Buckets): number | null {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? 0;
  if (les.at(-1) !== Infinity || total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of les) {
    const count = buckets.get(le)!;
    if (count >= rank) {
      if (le === Infinity) return lower;
      return count === below ? le : lower + ((le - lower) * (rank - below)) / (count - below);
    }
    lower = le;
    below = count;
  }
  return null;
}

/** A gRPC call succeeded when its status is OK, whatever its HTTP status; another request when it was not a 5xx. */
const isSuccess = (code: string | undefined, grpcStatus: string | undefined): boolean => {
  if (grpcStatus !== undefined && grpcStatus !== '') return grpcStatus === '0';
  const n = Number(code);
  return Number.isInteger(n) && n > 0 && n < 500;
};

/** Requests and latency of one group (an edge, a workload), added up over proxies and then summarised. */
export class GoldenAccumulator {
  private requests = 0;
  private ok = 0;
  private rps = 0;
  private readonly buckets: Buckets = new Map();

  /** Adds one proxy's increases of `tsmesh_requests_total` and of the duration buckets over `seconds`. */
  add(requests: readonly Sample[], buckets: readonly Sample[], seconds: number): void {
    let n = 0;
    for (const r of requests) {
      n += r.value;
      if (isSuccess(r.labels.response_code, r.labels.grpc_status)) this.ok += r.value;
    }
    this.requests += n;
    if (seconds > 0) this.rps += n / seconds;
    addBuckets(this.buckets, buckets);
  }

  signals(): GoldenSignals {
    const ms = (q: number): number | null => {
      const s = histogramQuantile(q, this.buckets);
      return s === null ? null : s * 1000;
    };
    return {
      requests: this.requests,
      rps: this.rps,
      successRate: this.requests > 0 ? this.ok / this.requests : null,
      p50Ms: ms(0.5),
      p95Ms: ms(0.95),
      p99Ms: ms(0.99),
    };
  }
}
