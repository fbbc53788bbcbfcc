// `tsmesh demo` as root: every workload a pod in its own network namespace
// (tsmesh init redirects, tsmesh proxy as uid 1337, apps calling ClusterIPs),
// with Prometheus on the host scraping the pod IPs. The same promises as in
// loopback mode, then nothing left behind after stop.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, waitFor } from '../lib/netns.js';
import { silentLogger } from '../lib/log.js';
import { chooseDemoMode, DemoNetwork } from './netns.js';
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

  it('is not taken for an abandoned network by another demo', async () => {
    const net = demo!.network!;
    const removed = await DemoNetwork.removeAbandoned();
    assert.deepEqual(removed.filter((r) => r.startsWith(net.bridge) || r.startsWith(`tsmesh-demo-${net.id}-`)), []);
    const links = (await run('ip', ['-br', 'link'])).stdout;
    assert.ok(links.includes(net.bridge), links);
  });

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
    const [namespaces, links, children] = [await demoNamespaces(), await demoLinks(), await childProcesses()];
    // Prometheus is the last part to start: every pod is up when it fails.
    await assert.rejects(startDemo({ log: silentLogger, mode: 'netns', prometheus: true, prometheusBinary: '/nonexistent/prometheus' }), /\/nonexistent\/prometheus/);
    assert.deepEqual((await demoNamespaces()).filter((ns) => !namespaces.includes(ns)), []);
    assert.deepEqual((await demoLinks()).filter((l) => !links.includes(l)), []);
    assert.deepEqual((await childProcesses()).filter((p) => !children.includes(p)), []);
  });
});

describe('tsmesh demo (network namespace mode) killed with SIGKILL', function () {
  this.timeout(180_000);

  it('leaves no process running in its namespaces (each dies with the demo: setpriv --pdeathsig), and the next demo removes its network', async function () {
    if ((await chooseDemoMode('auto')).mode !== 'netns') this.skip();
    const demoDirs = (): string[] => readdirSync(tmpdir()).filter((d) => d.startsWith('tsmesh-demo-'));
    const [namespaces, links, dirs] = [await demoNamespaces(), await demoLinks(), demoDirs()];
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'demo', '--mode', 'netns', '--rps', '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const made: string[] = [];
    try {
      await waitFor('the demo to be ready', async () => (output.includes('\nready:') ? true : undefined), 120_000, 200);
      made.push(...(await demoNamespaces()).filter((ns) => !namespaces.includes(ns)));
      const pidsIn = async (ns: string): Promise<string[]> => (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean);
      const before = (await Promise.all(made.map(pidsIn))).flat();
      assert.ok(made.length >= 5 && before.length >= 10, `namespaces ${made.join(', ')}; processes ${before.join(', ')}`);
      child.kill('SIGKILL');
      await once(child, 'exit');
      // The demo never ran its cleanup: what ends the processes is the kernel's parent-death signal.
      await waitFor('every process in the namespaces to end', async () => ((await Promise.all(made.map(pidsIn))).flat().length === 0 ? true : undefined), 10_000, 100);
      // The next demo removes what this one left: its namespaces, its bridge and veths.
      const madeLinks = (await demoLinks()).filter((l) => !links.includes(l));
      assert.equal(madeLinks.filter((l) => !l.includes('-')).length, 1, madeLinks.join(', '));
      const removed = await DemoNetwork.removeAbandoned();
      assert.deepEqual([...removed].sort(), [...made, ...madeLinks].sort());
      assert.deepEqual((await demoNamespaces()).filter((ns) => !namespaces.includes(ns)), []);
      assert.deepEqual((await demoLinks()).filter((l) => !links.includes(l)), []);
    } finally {
      child.kill('SIGKILL');
      // What a killed demo cannot remove, the test does: its namespaces, bridge and folder.
      for (const ns of (await demoNamespaces()).filter((n) => !namespaces.includes(n))) {
        for (const pid of (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
        await run('ip', ['netns', 'del', ns]);
      }
      for (const l of (await demoLinks()).filter((n) => !links.includes(n))) await run('ip', ['link', 'del', l]);
      for (const d of demoDirs().filter((n) => !dirs.includes(n))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
    }
  });
});

/** The demo namespaces on this machine (tsmesh-demo-<id>-<pod>). */
async function demoNamespaces(): Promise<string[]> {
  return (await run('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith('tsmesh-demo-')).map((l) => l.split(' ')[0]!);
}

/** The demo bridges and their host-side veths (tsmd<id>, tsmd<id>-<n>). */
async function demoLinks(): Promise<string[]> {
  return (await run('ip', ['-br', 'link'])).stdout.split('\n').filter((l) => l.startsWith('tsmd')).map((l) => l.split(/[\s@]/)[0]!);
}

/** Live processes whose parent is this one (what the demo spawns, detached or not; tsx's esbuild too). */
async function childProcesses(): Promise<string[]> {
  const out = (await run('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(process.pid)])).stdout;
  return out.split('\n').filter((l) => l.trim() !== '' && !/^\s*\d+\s+Z/.test(l) && !l.includes('ps -o'));
}
