import assert from 'node:assert/strict';
import { parseMetrics } from '../../lib/prom-text.js';
import { counterIncreases, GoldenAccumulator, histogramQuantile } from './golden.js';

const REQUESTS = new Set(['tsmesh_requests_total']);

/** Cumulative buckets from [le, count] pairs. */
const buckets = (pairs: [number, number][]): Map<number, number> => new Map(pairs);

function approx(actual: number | null, expected: number, what: string): void {
  assert.ok(actual !== null && Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
}

describe('golden signals', () => {
  describe('counterIncreases', () => {
    it('subtracts the earlier scrape per series, counts new series from zero and reset ones from zero', () => {
      const before = parseMetrics(`
tsmesh_requests_total{response_code="200",direction="outbound"} 100
tsmesh_requests_total{response_code="500",direction="outbound"} 40
tsmesh_other_total 7
`);
      // Label order differs from the first scrape: series are matched by their label set.
      const now = parseMetrics(`
tsmesh_requests_total{direction="outbound",response_code="200"} 130
tsmesh_requests_total{direction="outbound",response_code="500"} 3
tsmesh_requests_total{direction="outbound",response_code="503"} 2
tsmesh_other_total 9
`);
      const inc = counterIncreases(before, now, REQUESTS).map((s) => [s.labels.response_code, s.value]);
      assert.deepEqual(inc, [
        ['200', 30],
        ['500', 3],
        ['503', 2],
      ]);
    });
  });

  describe('histogramQuantile', () => {
    const b = buckets([
      [0.001, 0],
      [0.005, 50],
      [0.01, 90],
      [0.1, 100],
      [Infinity, 100],
    ]);
    it('interpolates linearly inside the bucket the rank falls in', () => {
      approx(histogramQuantile(0.25, b), 0.003, 'p25'); // 0.001 + 0.004 * 25/50
      approx(histogramQuantile(0.5, b), 0.005, 'p50');
      approx(histogramQuantile(0.9, b), 0.01, 'p90'); // 0.005 + 0.005 * 40/40
      approx(histogramQuantile(0.99, b), 0.091, 'p99'); // 0.01 + 0.09 * 9/10
    });
    it('starts the first bucket at zero', () => {
      approx(histogramQuantile(0.5, buckets([[0.002, 10], [Infinity, 10]])), 0.001, 'p50');
    });
    it('answers the highest finite bound for a rank in +Inf', () => {
      approx(histogramQuantile(0.99, buckets([[0.1, 10], [1, 10], [Infinity, 20]])), 1, 'p99');
    });
    it('has no answer without observations or without +Inf', () => {
      assert.equal(histogramQuantile(0.5, buckets([[0.1, 0], [Infinity, 0]])), null);
      assert.equal(histogramQuantile(0.5, buckets([[0.1, 5]])), null);
      assert.equal(histogramQuantile(0.5, new Map()), null);
    });
  });

  describe('GoldenAccumulator', () => {
    it('adds proxies up: rates per proxy window, 5xx as failures, quantiles over the summed buckets', () => {
      const g = new GoldenAccumulator();
      g.add(
        parseMetrics(`
tsmesh_requests_total{response_code="200"} 90
tsmesh_requests_total{response_code="500"} 10
tsmesh_requests_total{response_code="404"} 5
`),
        parseMetrics(`
tsmesh_request_duration_seconds_bucket{le="0.01",response_code="200"} 90
tsmesh_request_duration_seconds_bucket{le="0.1",response_code="200"} 90
tsmesh_request_duration_seconds_bucket{le="+Inf",response_code="200"} 90
tsmesh_request_duration_seconds_bucket{le="0.01",response_code="500"} 0
tsmesh_request_duration_seconds_bucket{le="0.1",response_code="500"} 15
tsmesh_request_duration_seconds_bucket{le="+Inf",response_code="500"} 15
`),
        10,
      );
      g.add(parseMetrics('tsmesh_requests_total{response_code="200"} 20\n'), parseMetrics(''), 5);
      const s = g.signals();
      assert.equal(s.requests, 125);
      approx(s.rps, 105 / 10 + 20 / 5, 'rps');
      approx(s.successRate, 115 / 125, 'success rate');
      // 105 observations: 90 at most 10 ms, 15 between 10 and 100 ms.
      approx(s.p50Ms, (52.5 / 90) * 10, 'p50');
      approx(s.p99Ms, 10 + (90 * (103.95 - 90)) / 15, 'p99');
    });
    it('judges a gRPC call by its grpc_status alone: OK is success whatever the HTTP status, any other status a failure', () => {
      const g = new GoldenAccumulator();
      g.add(
        parseMetrics(`
tsmesh_requests_total{response_code="200",grpc_status="0"} 60
tsmesh_requests_total{response_code="200",grpc_status="14"} 10
tsmesh_requests_total{response_code="200",grpc_status="5"} 10
tsmesh_requests_total{response_code="503",grpc_status="0"} 5
tsmesh_requests_total{response_code="200",grpc_status=""} 15
`),
        parseMetrics(''),
        10,
      );
      approx(g.signals().successRate, (60 + 5 + 15) / 100, 'success rate');
    });
    it('says null, not zero, for what it has not seen', () => {
      assert.deepEqual(new GoldenAccumulator().signals(), { requests: 0, rps: 0, successRate: null, p50Ms: null, p95Ms: null, p99Ms: null });
    });
  });
});
