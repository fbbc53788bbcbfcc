// `tsmesh demo` as root: every workload a pod in its own network namespace
// (tsmesh init redirects, tsmesh proxy as uid 1337, apps calling ClusterIPs),
// with Prometheus on the host scraping the pod IPs. The same promises as in
// loopback mode, then nothing left behind after stop.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GiveUp, run, waitFor } from '../lib/netns.js';
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
      await removeLeftovers(namespaces, links, dirs);
    }
  });
});

describe('tsmesh demo (network namespace mode) from a repository below a 0700 directory, as root\'s home is', function () {
  this.timeout(240_000);

  // The repository as a clone in /root would be: below a directory (mode 0700)
  // that uid 1000 (apps) and 1337 (proxies) cannot enter. A git clone and npm ci
  // would take minutes; a copy of the working tree (what the other tests run)
  // serves as well: sources copied, node_modules hard-linked (copied when
  // /tmp is another filesystem), no symlink back to this repository, so every
  // file the demo's processes read is under the closed directory. It runs the
  // real `tsmesh demo --mode netns` there (--mode netns: falling back to
  // loopback would be a failure, not a skip), as a user would, and stops it
  // with Ctrl-C (SIGINT).
  it('runs every pod, its app as uid 1000 and its proxy as uid 1337, each in a mount namespace of its own; stops on SIGINT and leaves nothing behind', async function () {
    if ((await chooseDemoMode('auto')).mode !== 'netns') this.skip();
    const [namespaces, links, dirs] = [await demoNamespaces(), await demoLinks(), demoDirs()];
    const home = mkdtempSync(join(tmpdir(), 'tsmesh-home-'));
    chmodSync(home, 0o700);
    const clone = join(home, 'tsmesh');
    let child: ReturnType<typeof spawn> | undefined;
    let output = '';
    try {
      await copyWorkingTree(REPO, clone);
      // Without help, the proxies' uid cannot reach the copy: otherwise this would prove nothing.
      const direct = await run('setpriv', ['--reuid=1337', '--regid=1337', '--clear-groups', 'cat', join(clone, 'package.json')]);
      assert.notEqual(direct.code, 0, 'uid 1337 reads the copy without help');

      const t0 = Date.now();
      child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'demo', '--mode', 'netns', '--rps', '20'], { cwd: clone, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      const running = (): boolean => child!.exitCode === null && child!.signalCode === null;
      const until = (what: string, test: () => boolean, ms: number): Promise<true> =>
        waitFor(
          what,
          async () => {
            if (test()) return true;
            if (!running()) throw new GiveUp(`the demo exited (${child!.exitCode ?? child!.signalCode}):\n${output}`);
            return undefined;
          },
          ms,
          200,
        );
      await until('the demo to be ready', () => output.includes('\nready:'), 150_000);
      assert.match(output, /\(network namespace mode: /);
      console.log(`      ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

      // Every process in the demo's namespaces: apps as 1000, proxies as 1337, none in this mount namespace, their code the copy's.
      const made = (await demoNamespaces()).filter((ns) => !namespaces.includes(ns));
      const pids = (await Promise.all(made.map(async (ns) => (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean)))).flat();
      const ours = readlinkSync('/proc/self/ns/mnt');
      const seen = pids.map((pid) => ({
        uid: Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]),
        mnt: readlinkSync(`/proc/${pid}/ns/mnt`),
        argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'),
      }));
      const proxies = seen.filter((p) => p.argv.includes('proxy'));
      const apps = seen.filter((p) => p.argv.some((a) => a.endsWith('demo/app-main.ts')));
      assert.equal(proxies.length, 5, JSON.stringify(seen));
      assert.equal(apps.length, 5, JSON.stringify(seen));
      for (const p of proxies) assert.equal(p.uid, 1337);
      for (const p of apps) {
        assert.equal(p.uid, 1000);
        assert.ok(p.argv.some((a) => a.startsWith(`${clone}/`)), `an app runs code from outside the copy: ${p.argv.join(' ')}`);
      }
      for (const p of [...proxies, ...apps]) assert.notEqual(p.mnt, ours, 'a process shares this mount namespace');
      // Their mounts are theirs: none on the host.
      const hostMounts = readFileSync('/proc/self/mountinfo', 'utf8');
      assert.ok(!hostMounts.includes(' tsmesh-reach ') && !hostMounts.includes(home), hostMounts);

      // Traffic through the mesh: the console table counts successful requests.
      await until('a table with successful requests', () => Number(/traffic generator: (\d+) ok/.exec(output)?.[1] ?? 0) > 0, 30_000);

      child.kill('SIGINT');
      const [code] = await exited;
      assert.equal(code, 0, output);
      assert.match(output, /SIGINT: stopping the demo/);
      assert.deepEqual((await demoNamespaces()).filter((ns) => !namespaces.includes(ns)), []);
      assert.deepEqual((await demoLinks()).filter((l) => !links.includes(l)), []);
      assert.deepEqual(demoDirs().filter((d) => !dirs.includes(d)), []);
      // The closed directory is as it was: nothing opened it up.
      assert.equal(statSync(home).mode & 0o777, 0o700);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- the demo's output\n${output.split('\n').slice(-40).join('\n')}`, { cause: e });
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      await removeLeftovers(namespaces, links, dirs);
      rmSync(home, { recursive: true, force: true });
    }
  });
});

const REPO = fileURLToPath(new URL('../', import.meta.url));

/** What copyWorkingTree leaves out: git's store, builds, coverage, the test cluster's downloads. */
const NOT_COPIED = new Set(['.git', 'node_modules', 'dist', 'coverage', '.nyc_output', join('test', 'cluster', '.cache')]);

/** The working tree into `to` (made 0755): files copied with their modes, node_modules hard-linked (copied across filesystems). */
async function copyWorkingTree(from: string, to: string): Promise<void> {
  mkdirSync(to, { mode: 0o755 });
  chmodSync(to, 0o755);
  cpSync(from, to, { recursive: true, filter: (src) => !NOT_COPIED.has(src.slice(from.length).replace(/^\/+/, '')) });
  const linked = await run('cp', ['-al', join(from, 'node_modules'), join(to, 'node_modules')], { timeoutMs: 60_000 });
  if (linked.code !== 0) {
    rmSync(join(to, 'node_modules'), { recursive: true, force: true });
    const copied = await run('cp', ['-a', join(from, 'node_modules'), join(to, 'node_modules')], { timeoutMs: 120_000 });
    if (copied.code !== 0) throw new Error(`cannot copy node_modules: ${copied.stderr.trim()}`);
  }
}

/** The demo folders in the temp folder (tsmesh-demo-<random>). */
function demoDirs(): string[] {
  return readdirSync(tmpdir()).filter((d) => d.startsWith('tsmesh-demo-'));
}

/** What a killed demo cannot remove, a test does: the namespaces, links and folders that were not there before it (processes in them by PID). */
async function removeLeftovers(namespaces: readonly string[], links: readonly string[], dirs: readonly string[]): Promise<void> {
  for (const ns of (await demoNamespaces()).filter((n) => !namespaces.includes(n))) {
    for (const pid of (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    await run('ip', ['netns', 'del', ns]);
  }
  for (const l of (await demoLinks()).filter((n) => !links.includes(n))) await run('ip', ['link', 'del', l]);
  for (const d of demoDirs().filter((n) => !dirs.includes(n))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
}

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
