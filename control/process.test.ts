// The control plane process assembled in this process (what `tsmesh
// control-plane` and the demo run) in local mode, on loopback with ports 0:
// a token file, a Mesh file, and a proxy process (proxy/process.ts) that gets
// its certificate and the mesh from it. Kubernetes mode, with the leader's
// writers, runs against a real API server in test/k8s/control-plane.test.ts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { writeRootCa } from '../ca/material.js';
import { startLoopbackProxy } from '../proxy/testdata/mesh.js';
import { createRootCa } from '../ca/root.js';
import { silentLogger } from '../lib/log.js';
import { startControlPlaneProcess, type ControlPlaneProcess, type ControlPlaneProcessOptions } from './process.js';

const TOKEN = 'control-process-test-token-0123';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

/** What holds this process open, as a sorted list (not a request in flight, such as a file's read or close, which ends by itself). */
const handles = (): string[] =>
  process
    .getActiveResourcesInfo()
    .filter((r) => !r.includes('Req'))
    .sort();

async function until<T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the control plane process (startControlPlaneProcess) in local mode', function () {
  this.timeout(30_000);
  let dir: string;
  let agent: Agent;
  let baseline: string[];
  const options = (extra: Partial<ControlPlaneProcessOptions> = {}): ControlPlaneProcessOptions => ({
    log: silentLogger,
    caDir: dir,
    tokenFile: join(dir, 'tokens.yaml'),
    meshFile: join(dir, 'mesh.yaml'),
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    ...extra,
  });
  const status = async (url: string): Promise<number> => {
    const r = await request(url, { dispatcher: agent });
    await r.body.dump();
    return r.statusCode;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-control-process-'));
    await writeRootCa(dir, await createRootCa('cluster.local'));
    writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n  - token: ${TOKEN}\n    spiffeId: ${WEB}\n`);
    writeFileSync(
      join(dir, 'mesh.yaml'),
      'apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nservices:\n  - { name: api, namespace: shop, clusterIPs: [10.96.0.10], ports: [{ port: 80 }], endpoints: [{ address: 10.244.1.5, serviceAccount: api }] }\n',
    );
    agent = new Agent();
    baseline = handles();
  });
  after(async () => {
    await agent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the CA and the Mesh file to a proxy process, runs no injector, and close() leaves nothing open', async () => {
    const plane: ControlPlaneProcess = await startControlPlaneProcess(options());
    try {
      assert.equal(plane.webhookPort, undefined, 'no injector in local mode');
      assert.equal(plane.isLeader(), true, 'a local mesh has one writer');
      assert.equal(await status(`http://${plane.adminAddress}/readyz`), 200);
      const proxy = await startLoopbackProxy(`127.0.0.1:${plane.caPort}`, dir, 'web');
      writeFileSync(join(dir, 'token'), TOKEN);
      try {
        await until('the proxy to be ready', () => proxy.notReadyReason() === undefined || undefined);
        assert.equal(await status(`${proxy.adminUrl}/ready`), 200);
        const api = proxy.sidecar.config()!.services.find((s) => s.name === 'api')!;
        assert.equal(api.endpoints[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/api');
        assert.equal(proxy.identity.current()?.spiffeId, WEB);
      } finally {
        await proxy.stop();
      }
    } finally {
      await plane.close();
    }
    await agent.close();
    agent = new Agent();
    await until('the control plane to leave nothing open', () => handles().join() === baseline.join() || undefined, 5000).catch(() =>
      assert.deepEqual(handles(), baseline, 'what the control plane left open'),
    );
  });

  it('fails to start on a taken admin port and leaves nothing open', async () => {
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      await assert.rejects(startControlPlaneProcess(options({ adminPort: (taken.address() as AddressInfo).port })), /EADDRINUSE/);
    } finally {
      taken.close();
    }
    await until('the failed start to leave nothing open', () => handles().join() === baseline.join() || undefined, 5000).catch(() =>
      assert.deepEqual(handles(), baseline, 'what the failed start left open'),
    );
  });

  it('refuses a token file it cannot read before anything listens', async () => {
    await assert.rejects(startControlPlaneProcess(options({ tokenFile: join(dir, 'missing.yaml') })), /cannot read token file/);
    assert.deepEqual(handles(), baseline);
  });
});
