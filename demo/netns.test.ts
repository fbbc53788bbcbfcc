// `tsmesh demo` as root: every workload a pod in its own network namespace
// (tsmesh init redirects, tsmesh proxy as uid 1337, apps calling ClusterIPs),
// with Prometheus on the host scraping the pod IPs. The same promises as in
// loopback mode, then nothing left behind after stop.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { run } from '../lib/netns.js';
import { silentLogger } from '../lib/log.js';
import { chooseDemoMode } from './netns.js';
import { PROMETHEUS_BINARY } from './prometheus.js';
import { startDemo, type RunningDemo } from './run.js';
import { driveTraffic, itKeepsTheDemoPromises, waitForPrometheusEdges } from './testdata/demo-checks.js';

describe('tsmesh demo (network namespace mode)', function () {
  this.timeout(180_000);
  let demo: RunningDemo | undefined;
  before(async function () {
    const { mode, reason } = await chooseDemoMode('auto');
    if (mode !== 'netns') {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    demo = await startDemo({ log: silentLogger, rps: 100, mode: 'netns', prometheus: existsSync(PROMETHEUS_BINARY) });
    await driveTraffic(demo);
  });
  after(async () => demo?.stop());

  it('runs each workload in a namespace of its own, its sidecar admin on the pod IP', () => {
    assert.equal(demo!.mode, 'netns');
    for (const [workload, url] of demo!.adminUrls) assert.equal(url, `http://${demo!.network!.ip(workload)}:15020`);
  });

  itKeepsTheDemoPromises(() => demo!);

  it('lets Prometheus on the host scrape every pod and see every edge', async function () {
    if (!demo!.prometheus) this.skip();
    await waitForPrometheusEdges(demo!);
  });

  it('leaves no namespace, link or process behind after stop', async () => {
    const net = demo!.network!;
    const namespaces = [...net.pods.values()].map((p) => p.ns);
    const pids = [...net.startedPids];
    assert.ok(pids.length >= 10, `only ${pids.length} processes were tracked`);
    await demo!.stop();
    demo = undefined;
    const listed = (await run('ip', ['netns', 'list'])).stdout;
    assert.deepEqual(namespaces.filter((ns) => listed.includes(ns)), []);
    const links = (await run('ip', ['-br', 'link'])).stdout;
    assert.ok(!links.includes(net.bridge), `${net.bridge} (or one of its veths) is still there:\n${links}`);
    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    assert.deepEqual(alive, []);
  });
});

describe('tsmesh demo (network namespace mode) failing halfway through its start', function () {
  this.timeout(180_000);

  it('removes every namespace, link and process it had made', async function () {
    if ((await chooseDemoMode('auto')).mode !== 'netns') this.skip();
    const demoNamespaces = async (): Promise<string[]> => (await run('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith('tsmesh-demo-')).map((l) => l.split(' ')[0]!);
    const demoLinks = async (): Promise<string[]> => (await run('ip', ['-br', 'link'])).stdout.split('\n').filter((l) => l.startsWith('tsmd')).map((l) => l.split(/[\s@]/)[0]!);
    const [namespaces, links, children] = [await demoNamespaces(), await demoLinks(), await childProcesses()];
    // Prometheus is the last part to start: every pod is up when it fails.
    await assert.rejects(startDemo({ log: silentLogger, mode: 'netns', prometheus: true, prometheusBinary: '/nonexistent/prometheus' }), /\/nonexistent\/prometheus/);
    assert.deepEqual((await demoNamespaces()).filter((ns) => !namespaces.includes(ns)), []);
    assert.deepEqual((await demoLinks()).filter((l) => !links.includes(l)), []);
    assert.deepEqual((await childProcesses()).filter((p) => !children.includes(p)), []);
  });
});

/** Live processes whose parent is this one (what the demo spawns, detached or not; tsx's esbuild too). */
async function childProcesses(): Promise<string[]> {
  const out = (await run('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(process.pid)])).stdout;
  return out.split('\n').filter((l) => l.trim() !== '' && !/^\s*\d+\s+Z/.test(l) && !l.includes('ps -o'));
}
