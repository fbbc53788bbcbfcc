// The real-node tier's own machinery: its scripts pass shellcheck; a machine
// without the Debian packages is told so and skipped, never passed; and a
// bring-up interrupted half way (SIGINT to node.sh, or its owner SIGKILLed,
// as when a test runner dies) leaves nothing behind.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostState, nodeCacheDir, nodeResidue, nodeScript, nodeTier, type HostState } from './node.js';

const here = join(nodeScript, '..');

function onPath(cmd: string): string | undefined {
  const r = spawnSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function until<T>(fn: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('real node tier: its machinery (test/node)', function () {
  it('the scripts pass shellcheck', function () {
    if (!onPath('shellcheck')) {
      console.log('      skipped: shellcheck is not installed (apt-get install shellcheck)');
      this.skip();
    }
    const r = spawnSync('shellcheck', ['-x', 'build.sh', 'ensure.sh', 'node.sh', 'gamma/build.sh'], { cwd: here, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('ensure.sh says plainly that the tier is skipped, and why, on a machine without the Debian packages (exit 0)', function () {
    // A PATH with the shell and coreutils it needs, and none of the packages.
    const bin = mkdtempSync(join(tmpdir(), 'tsmesh-node-path-'));
    try {
      for (const cmd of ['bash', 'uname', 'id', 'dirname']) {
        const p = onPath(cmd);
        assert.ok(p, cmd);
        symlinkSync(p, join(bin, cmd));
      }
      const r = spawnSync(join(bin, 'bash'), [join(here, 'ensure.sh')], { env: { PATH: bin }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      // Go may be found at /usr/local/go/bin; then the packages are what is missing.
      assert.match(r.stdout, /^real node tier: SKIPPED \((needs root|Go is not installed|missing Debian packages: apt-get install containerd runc (containernetworking-plugins )?iptables conntrack mmdebstrap iproute2 openssl curl)/m, r.stdout);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('nodeTier() names what is missing and how to get it', function () {
    const path = process.env['PATH'];
    process.env['PATH'] = '/nonexistent';
    try {
      const tier = nodeTier();
      assert.equal(tier.ok, false);
      assert.match(tier.reason, /^real node tier SKIPPED: (needs Linux|needs root|missing Debian packages: apt-get install containerd runc .*\(\.ci\/run installs them\))/);
    } finally {
      process.env['PATH'] = path;
    }
  });

  it('nodeTier() names a missing image, the test apps\' among them, and the build that makes it', function () {
    const tier = nodeTier();
    if (!tier.ok) {
      console.log(`      skipped: ${tier.reason}`);
      this.skip();
    }
    // A cache with everything but the test apps' image.
    const cache = mkdtempSync(join(tmpdir(), 'tsmesh-node-cache-'));
    const saved = process.env['TSMESH_NODE_CACHE'];
    try {
      mkdirSync(join(cache, 'images'));
      symlinkSync(join(nodeCacheDir(), 'bin'), join(cache, 'bin'));
      for (const i of ['pause', 'coredns', 'tsmesh']) symlinkSync(join(nodeCacheDir(), 'images', `${i}.tar`), join(cache, 'images', `${i}.tar`));
      process.env['TSMESH_NODE_CACHE'] = cache;
      const without = nodeTier();
      assert.equal(without.ok, false);
      assert.equal(without.reason, `real node tier SKIPPED: ${join(cache, 'images', 'testapps.tar')} is not built; run test/node/build.sh (npm run test:node)`);
    } finally {
      if (saved === undefined) delete process.env['TSMESH_NODE_CACHE'];
      else process.env['TSMESH_NODE_CACHE'] = saved;
      rmSync(cache, { recursive: true, force: true });
    }
  });

  describe('a bring-up interrupted half way leaves nothing behind', function () {
    this.timeout(180_000);
    let root: string;
    let host: HostState;
    const children: ChildProcess[] = [];

    before(async function () {
      const tier = nodeTier();
      if (!tier.ok) {
        console.log(`      ${tier.reason}`);
        this.skip();
      }
      host = await hostState();
    });
    beforeEach(function () {
      root = mkdtempSync(join(tmpdir(), 'tsmesh-node-root-'));
    });
    afterEach(function () {
      for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      // Whatever a failed assertion left: node.sh stop of each state folder.
      for (const d of existsSync(root) ? readdirSync(root) : []) spawnSync('bash', [nodeScript, 'stop', join(root, d)], { stdio: 'ignore' });
      rmSync(root, { recursive: true, force: true });
    });

    /** Starts node.sh start in its own state root; resolves once daemon NAME runs in the node's namespaces. */
    async function startUntil(daemon: string, env: NodeJS.ProcessEnv = {}): Promise<{ start: ChildProcess; exited: Promise<[number | null, NodeJS.Signals | null]>; node: { dir: string; cgroup: string; netns: string; mntns: string } }> {
      const start = spawn('bash', [nodeScript, 'start'], { env: { ...process.env, TSMESH_NODE_STATE_ROOT: root, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(start);
      let stderr = '';
      start.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = once(start, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      const dir = await until(() => readdirSync(root).map((d) => join(root, d)).find((d) => existsSync(join(d, 'run', `${daemon}.pid`))), 120_000, `${daemon} to start (${stderr})`);
      const anchor = readFileSync(join(dir, 'anchor.pid'), 'utf8').trim();
      const netns = readlinkSync(`/proc/${anchor}/ns/net`);
      assert.notEqual(netns, readlinkSync('/proc/self/ns/net'), 'the anchor is in a network namespace of its own');
      const node = { dir, cgroup: `tsmesh-node-${readFileSync(join(dir, '.tsmesh-node'), 'utf8').trim()}`, netns, mntns: readlinkSync(`/proc/${anchor}/ns/mnt`) };
      return { start, exited, node };
    }

    it('SIGINT to node.sh start while the API server starts: it stops what it started and exits 130', async function () {
      const { start, exited, node } = await startUntil('kube-apiserver');
      start.kill('SIGINT');
      const [code] = await exited;
      assert.equal(code, 130);
      assert.deepEqual(nodeResidue(node), []);
      const now = await hostState();
      assert.deepEqual(now.sysctls, host.sysctls);
      assert.deepEqual(now.links, host.links);
    });

    it('its owner SIGKILLed while containerd runs (a test runner that dies): the watchdog stops the node', async function () {
      const owner = spawn('sleep', ['600'], { stdio: 'ignore' });
      children.push(owner);
      const { node } = await startUntil('containerd', { TSMESH_NODE_PARENT_PID: String(owner.pid) });
      owner.kill('SIGKILL');
      const t0 = Date.now();
      await until(() => (nodeResidue(node).length === 0 ? true : undefined), 60_000, `the watchdog to stop the node: ${nodeResidue(node).join(', ')}`);
      console.log(`      stopped ${Date.now() - t0} ms after its owner died`);
      const now = await hostState();
      assert.deepEqual(now.sysctls, host.sysctls);
      assert.deepEqual(now.links, host.links);
    });
  });
});
