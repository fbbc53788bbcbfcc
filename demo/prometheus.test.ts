// `tsmesh demo --prometheus`: Debian's Prometheus, started by the demo,
// scrapes every sidecar and answers for tsmesh_requests_total on each edge;
// stop() ends it and removes its directory.
import assert from 'node:assert/strict';
import { silentLogger } from '../lib/log.js';
import { PROMETHEUS_BINARY, prometheusConfig } from './prometheus.js';
import { startDemo, type RunningDemo } from './run.js';
import { promQuery, waitForPrometheusEdges } from './testdata/demo-checks.js';
import { run } from '../lib/netns.js';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('tsmesh demo --prometheus (loopback mode)', function () {
  this.timeout(120_000);
  let demo: RunningDemo | undefined;
  before(async function () {
    if (!existsSync(PROMETHEUS_BINARY)) this.skip();
    demo = await startDemo({ log: silentLogger, rps: 50, mode: 'loopback', prometheus: true });
  });
  after(async () => demo?.stop());

  it('writes a scrape configuration promtool accepts', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-prom-config-'));
    try {
      writeFileSync(join(dir, 'prometheus.yml'), prometheusConfig([{ job: 'tsmesh-proxy', targets: [{ address: '127.0.0.1:15020', labels: { workload: 'web' } }] }]));
      const r = await run('promtool', ['check', 'config', join(dir, 'prometheus.yml')]);
      if (r.code === 127) this.skip();
      assert.equal(r.code, 0, r.stderr + r.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers tsmesh_requests_total with a series on every edge', async () => {
    const seen = await waitForPrometheusEdges(demo!);
    assert.ok(seen.length >= 5, seen.join(', '));
  });

  it('scrapes every sidecar and the control plane', async () => {
    // Each target's first scrape falls somewhere in the first interval (2 s): the edges above may be in before the control plane's.
    const targets = demo!.adminUrls.size + 1;
    let up = await promQuery(demo!, 'up');
    for (const deadline = Date.now() + 20_000; up.length < targets && Date.now() < deadline; up = await promQuery(demo!, 'up')) await new Promise((r) => setTimeout(r, 500));
    const down = up.filter((r) => r.value[1] !== '1').map((r) => r.metric.instance);
    assert.deepEqual(down, []);
    assert.equal(up.length, targets, JSON.stringify(up.map((r) => r.metric)));
  });

  it('is stopped and its directory removed with the demo', async () => {
    const { url, dir } = demo!.prometheus!;
    await demo!.stop();
    demo = undefined;
    await assert.rejects(fetch(`${url}/-/ready`), 'Prometheus still answers after stop');
    assert.ok(!existsSync(dir), `${dir} is still there`);
  });
});
