// HotCounter and HotHistogram against prom-client's own Counter and Histogram:
// the same observations give the same exposition text and the same JSON.
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from './prom.js';
import { HotCounter, HotHistogram } from './prom-hot.js';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LABELS = ['direction', 'destination_service', 'response_code'] as const;

function pair() {
  const theirs = new Registry();
  const ours = new Registry();
  const spec = { name: 'tsmesh_request_duration_seconds', help: 'Time from the request arriving to the response head leaving.', labelNames: LABELS, buckets: BUCKETS };
  const cspec = { name: 'tsmesh_requests_total', help: 'HTTP requests handled by the proxy.', labelNames: LABELS };
  return {
    theirs,
    ours,
    histograms: [new Histogram({ ...spec, labelNames: [...LABELS], registers: [theirs] }), new HotHistogram({ ...spec, registers: [ours] })],
    counters: [new Counter({ ...cspec, labelNames: [...LABELS], registers: [theirs] }), new HotCounter({ ...cspec, registers: [ours] })],
  };
}

describe('HotCounter and HotHistogram (prom-client compatible)', () => {
  it('expose the same text and JSON as prom-client for the same observations', async () => {
    const { theirs, ours, histograms, counters } = pair();
    // A seeded walk over label sets and values, bucket bounds themselves included.
    let seed = 7;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const values = [...BUCKETS, 0, 11, 1e-9, 0.3333];
    for (let i = 0; i < 5000; i++) {
      const labels = { direction: random() < 0.5 ? 'inbound' : 'outbound', destination_service: `svc-${Math.floor(random() * 3)}.shop`, response_code: String([200, 404, 503][Math.floor(random() * 3)]) };
      const v = random() < 0.3 ? values[Math.floor(random() * values.length)]! : random() * 3;
      for (const h of histograms) h.labels(labels).observe(v);
      for (const c of counters) c.labels(labels).inc(i % 7 === 0 ? 2 : 1);
    }
    const text = await ours.metrics();
    assert.equal(text, await theirs.metrics());
    assert.match(text, /^tsmesh_request_duration_seconds_bucket\{le="\+Inf",direction="(in|out)bound",destination_service="svc-\d\.shop",response_code="\d{3}"\} \d+$/m);
    // prom-client's JSON also has an exemplar slot (null) on each bucket; these keep none.
    const json = async (r: Registry): Promise<unknown> => JSON.parse(JSON.stringify(await r.getMetricsAsJSON(), (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
    assert.deepEqual(await json(ours), await json(theirs));
  });

  it('refuse a missing, unknown or non-scalar label, NaN, a negative increment and unsorted buckets, naming what was wrong', () => {
    const { counters, histograms } = pair();
    const counter = counters[1] as HotCounter<(typeof LABELS)[number]>;
    const histogram = histograms[1] as HotHistogram<(typeof LABELS)[number]>;
    assert.throws(() => counter.labels({ direction: 'inbound', destination_service: 'a' } as never), /label response_code is missing/);
    assert.throws(() => counter.labels({ direction: 'inbound', destination_service: 'a', response_code: '200', pod: 'x' } as never), /has no label "pod"/);
    assert.throws(() => counter.labels({ direction: {}, destination_service: 'a', response_code: '200' } as never), /label direction is a object/);
    assert.throws(() => counter.labels({ direction: 'in', destination_service: 'a', response_code: '200' }).inc(-1), /only goes up/);
    assert.throws(() => histogram.labels({ direction: 'in', destination_service: 'a', response_code: '200' }).observe(Number.NaN), /NaN/);
    assert.throws(() => new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: [], buckets: [1, 0.5], registers: [] }), /buckets must increase/);
    assert.throws(() => new HotHistogram({ name: 'h_seconds', help: 'h', labelNames: ['le'], buckets: [1], registers: [] }), /le is the histogram's own label/);
    assert.throws(() => new HotCounter({ name: 'bad-name', help: 'h', labelNames: [], registers: [] }), /not a Prometheus metric name/);
    assert.throws(() => new HotCounter({ name: 'tsmesh_requests_total', help: 'h', labelNames: [], registers: [pair().ours] }), /already been registered/);
  });

  it('give one child per label set, so a bound child and a fresh labels() call count together', async () => {
    const r = new Registry();
    const c = new HotCounter({ name: 'x_total', help: 'x', labelNames: ['a'], registers: [r] });
    const bound = c.labels({ a: '1' });
    bound.inc();
    c.labels({ a: '1' }).inc(2);
    c.labels({ a: 2 }).inc();
    assert.equal(await r.metrics(), '# HELP x_total x\n# TYPE x_total counter\nx_total{a="1"} 3\nx_total{a="2"} 1\n');
    r.resetMetrics();
    assert.equal(await r.metrics(), '# HELP x_total x\n# TYPE x_total counter\n');
  });
});
