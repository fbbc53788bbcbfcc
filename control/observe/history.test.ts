import assert from 'node:assert/strict';
import { parseMetrics } from '../../lib/prom-text.js';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { HistoryStore, Ring } from './history.js';
import type { Scrape, TargetState } from './view.js';

const ID = (sa: string): string => `spiffe://cluster.local/ns/demo/sa/${sa}`;

/** api's proxy: `ok` and `failed` outbound calls to ratings (`retries` retried), and `answered` inbound calls from web. */
function apiText(c: { ok: number; failed: number; retries: number; answered: number }): string {
  const out = (code: string, n: number): string =>
    `tsmesh_requests_total{direction="outbound",source_identity="${ID('api')}",destination_identity="${ID('ratings')}",destination_service="ratings.demo",response_code="${code}",tls="true",grpc_status="",route="default"} ${n}`;
  return [
    out('200', c.ok),
    out('500', c.failed),
    `tsmesh_retries_total{destination_service="ratings.demo",reason="500"} ${c.retries}`,
    `tsmesh_requests_total{direction="inbound",source_identity="${ID('web')}",destination_identity="${ID('api')}",destination_service="api.demo",response_code="200",tls="true",grpc_status=""} ${c.answered}`,
    `tsmesh_request_duration_seconds_bucket{le="0.01",direction="inbound",destination_service="api.demo",response_code="200"} ${c.answered}`,
    `tsmesh_request_duration_seconds_bucket{le="+Inf",direction="inbound",destination_service="api.demo",response_code="200"} ${c.answered}`,
  ].join('\n');
}

/** ratings' proxy: what it answered api. */
function ratingsText(ok: number, failed: number): string {
  const line = (code: string, n: number): string =>
    `tsmesh_requests_total{direction="inbound",source_identity="${ID('api')}",destination_identity="${ID('ratings')}",destination_service="ratings.demo",response_code="${code}",tls="true",grpc_status=""} ${n}`;
  return [line('200', ok), line('500', failed)].join('\n');
}

/** The observer's state of one proxy: its scrapes so far (it keeps a window; the store needs only the last). */
class Proxy {
  readonly scrapes: Scrape[] = [];
  constructor(readonly workload: string) {}
  scrape(at: number, text: string): void {
    this.scrapes.push({ at, samples: parseMetrics(text) });
  }
  state(): TargetState {
    return { target: { workload: this.workload, namespace: 'demo', url: `http://${this.workload}:15020/metrics` }, scrapes: this.scrapes.slice(-2) };
  }
}

describe('Ring', () => {
  it('holds at most its capacity, dropping the oldest entry first', () => {
    const ring = new Ring<number>(3);
    assert.deepEqual(ring.toArray(), []);
    assert.equal(ring.last(), undefined);
    for (let i = 1; i <= 7; i++) ring.push(i);
    assert.equal(ring.length, 3);
    assert.deepEqual(ring.toArray(), [5, 6, 7]);
    assert.equal(ring.last(), 7);
  });

  it('refuses a capacity below one', () => {
    assert.throws(() => new Ring(0), /at least one entry, got 0/);
  });
});

describe('HistoryStore on virtual time', () => {
  let clock: ManualScheduler;
  let history: HistoryStore;
  let api: Proxy;
  let ratings: Proxy;

  beforeEach(() => {
    clock = new ManualScheduler();
    history = new HistoryStore({ clock, intervalMs: 10_000, points: 3 });
    api = new Proxy('api');
    ratings = new Proxy('ratings');
  });

  /** Both proxies scraped now with these counters, then the scrapes offered to the store. */
  function round(c: { ok: number; failed: number; retries: number; answered: number; ratingsOk: number; ratingsFailed: number }): boolean {
    api.scrape(clock.now(), apiText(c));
    ratings.scrape(clock.now(), ratingsText(c.ratingsOk, c.ratingsFailed));
    return history.offer([api.state(), ratings.state()]);
  }

  it('takes a point per interval, computes rates from the counters between points, and keeps the last `points`', () => {
    // Every 2 s the observer scrapes; the store takes a point only every 10 s.
    let taken = 0;
    for (let s = 0; s <= 60; s += 2) {
      // api calls ratings 10 times a second: 9 answered OK at once, 1 failed and retried to success.
      if (round({ ok: 10 * s, failed: 0, retries: s, answered: 10 * s, ratingsOk: 10 * s, ratingsFailed: s })) taken += 1;
      clock.advance(2000);
    }
    assert.equal(taken, 7, 'a point at 0, 10, ..., 60 s');
    const view = history.view();
    assert.equal(view.points, 3);
    assert.equal(view.intervalSeconds, 10);
    const edge = view.edges['demo/api -> ratings.demo'];
    assert.ok(edge, `edges: ${Object.keys(view.edges).join(', ')}`);
    assert.equal(edge.length, 3, 'bounded: the oldest points were dropped');
    const start = Date.UTC(2030, 0, 1);
    assert.deepEqual(
      edge.map((p) => p.at - start),
      [40_000, 50_000, 60_000],
    );
    for (const p of edge) {
      assert.equal(p.rps, 10);
      assert.equal(p.successRate, 1, 'the caller saw every call succeed');
      assert.equal(p.backendSuccessRate, 10 / 11, 'ratings answered 1 in 11 with a 500');
      assert.equal(p.retriesPerSecond, 1);
      assert.equal(p.mtlsShare, 1);
    }
    const apiPoints = view.workloads['demo/api']!;
    assert.equal(apiPoints.length, 3);
    assert.equal(apiPoints.at(-1)!.rps, 10);
    assert.ok(Math.abs(apiPoints.at(-1)!.p99Ms! - 9.9) < 1e-9, `every answer in the 10 ms bucket: ${apiPoints.at(-1)!.p99Ms}`);
    assert.deepEqual(Object.keys(history.view('demo/ratings').edges), ['demo/api -> ratings.demo'], 'the edges into a workload come with it');
    assert.deepEqual(Object.keys(history.view('demo/web').edges), []);
  });

  it("gives a workload the edges it answered behind a split, whose service is another's name", () => {
    const web = new Proxy('web');
    const canary = (v1: number, v2: number): string =>
      [
        ['api', v1],
        ['api-v2', v2],
      ]
        .map(
          ([by, n]) =>
            `tsmesh_requests_total{direction="outbound",source_identity="${ID('web')}",destination_identity="${ID(String(by))}",destination_service="api.demo",response_code="200",tls="true",grpc_status=""} ${n}`,
        )
        .join('\n');
    web.scrape(clock.now(), canary(0, 0));
    history.offer([web.state()]);
    clock.advance(10_000);
    web.scrape(clock.now(), canary(90, 10));
    history.offer([web.state()]);
    assert.deepEqual(Object.keys(history.view('demo/api-v2').edges), ['demo/web -> api.demo']);
    assert.deepEqual(Object.keys(history.view('demo/api').edges), ['demo/web -> api.demo']);
    assert.deepEqual(Object.keys(history.view('demo/ratings').edges), []);
  });

  it('counts a counter that went down (the proxy restarted) from zero, never as a negative rate', () => {
    round({ ok: 5000, failed: 0, retries: 0, answered: 5000, ratingsOk: 5000, ratingsFailed: 0 });
    clock.advance(10_000);
    round({ ok: 5100, failed: 0, retries: 0, answered: 5100, ratingsOk: 5100, ratingsFailed: 0 });
    clock.advance(10_000);
    // api's proxy restarted: its counters start again from zero; it has made 30 calls since.
    round({ ok: 30, failed: 0, retries: 0, answered: 30, ratingsOk: 5130, ratingsFailed: 0 });
    const edge = history.view().edges['demo/api -> ratings.demo']!;
    assert.deepEqual(
      edge.map((p) => p.rps),
      [10, 3],
    );
    assert.ok(history.view().workloads['demo/api']!.every((p) => p.rps >= 0));
  });

  it('keeps at most maxSeries series and says how many got no point', () => {
    history = new HistoryStore({ clock, intervalMs: 10_000, points: 3, maxSeries: 2 });
    round({ ok: 0, failed: 0, retries: 0, answered: 0, ratingsOk: 0, ratingsFailed: 0 });
    clock.advance(10_000);
    round({ ok: 10, failed: 0, retries: 0, answered: 10, ratingsOk: 10, ratingsFailed: 0 });
    const view = history.view();
    assert.equal(Object.keys(view.workloads).length + Object.keys(view.edges).length, 2);
    assert.equal(view.droppedSeries, 1, 'two workloads and one edge, room for two');
  });

  it('forgets a series that got no point for a whole ring span', () => {
    round({ ok: 0, failed: 0, retries: 0, answered: 0, ratingsOk: 0, ratingsFailed: 0 });
    clock.advance(10_000);
    round({ ok: 10, failed: 0, retries: 0, answered: 10, ratingsOk: 10, ratingsFailed: 0 });
    assert.ok(history.view().workloads['demo/ratings']);
    // ratings goes away; api stays, scraped every interval.
    for (let i = 0; i < 5; i++) {
      clock.advance(10_000);
      api.scrape(clock.now(), apiText({ ok: 10, failed: 0, retries: 0, answered: 10 }));
      history.offer([api.state()]);
    }
    assert.equal(history.view().workloads['demo/ratings'], undefined);
    assert.equal(history.view().workloads['demo/api']!.length, 3);
  });
});
