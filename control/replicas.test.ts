// Two control-plane replicas behind one address, as a Service of two pods is:
// a relay on loopback hands each new connection to the next replica in turn,
// as kube-proxy may. A proxy's acknowledgements come on connections of their
// own; they must reach the replica that serves its stream (the address that
// replica names in ACK_ADDRESS_HEADER), or that replica never learns what the
// proxy runs: `tsmesh proxy-status` said NOT ACKED, and a root rotation would
// wait on it for ever.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRootCa } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { silentLogger } from '../lib/log.js';
import { waitFor } from '../lib/netns.js';
import type { RunningProxy } from '../proxy/process.js';
import { startLoopbackProxy } from '../proxy/testdata/mesh.js';
import { startControlPlaneProcess, type ControlPlaneProcess } from './process.js';
import { fetchAdminJson } from './admin-client.js';
import { NOT_SERVED, PROXIES_PATH, type ProxyStatusList } from './proxies.js';

const TOKEN = 'replicas-test-token-0123456789';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

describe('two control-plane replicas behind one address', function () {
  this.timeout(60_000);
  let dir: string;
  const planes: ControlPlaneProcess[] = [];
  let relay: Server;
  const sockets = new Set<Socket>();
  let proxy: RunningProxy | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-replicas-'));
    await writeRootCa(dir, await createRootCa('cluster.local'));
    writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n  - token: ${TOKEN}\n    spiffeId: ${WEB}\n`);
    writeFileSync(join(dir, 'token'), TOKEN);
    writeFileSync(
      join(dir, 'mesh.yaml'),
      'apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nservices:\n  - { name: api, namespace: shop, clusterIPs: [10.96.0.10], ports: [{ port: 80 }], endpoints: [{ address: 10.244.1.5, serviceAccount: api }] }\n',
    );
    for (let i = 0; i < 2; i++) {
      planes.push(await startControlPlaneProcess({ log: silentLogger, caDir: dir, tokenFile: join(dir, 'tokens.yaml'), meshFile: join(dir, 'mesh.yaml'), host: '127.0.0.1', port: 0, adminPort: 0 }));
    }
    // The Service: each new connection to the next replica.
    let next = 0;
    relay = createServer((client) => {
      const plane = planes[next++ % planes.length]!;
      const upstream = connect(plane.caPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((ok) => relay.listen(0, '127.0.0.1', ok));
  });

  after(async () => {
    await proxy?.stop();
    for (const s of sockets) s.destroy();
    relay?.close();
    for (const p of planes) await p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("each acknowledgement reaches the replica that serves the proxy's stream: it shows the proxy SYNCED, and no replica NOT ACKED", async () => {
    proxy = await startLoopbackProxy(`127.0.0.1:${(relay.address() as AddressInfo).port}`, dir, 'web', 'web-0');
    await waitFor('the proxy to be ready', async () => proxy!.notReadyReason() === undefined || undefined, 15_000);
    const version = proxy.sidecar.config()!.version;
    const seen = async (): Promise<{ sync: string; ackedVersion: string | null }[]> =>
      (await Promise.all(planes.map((p) => fetchAdminJson<ProxyStatusList>(p.adminAddress, PROXIES_PATH, NOT_SERVED)))).flatMap((l) => l.proxies.filter((x) => x.spiffeId === WEB));
    const synced = await waitFor('the replica serving the stream to show the proxy SYNCED', async () => {
      const all = await seen();
      return all.length === 1 && all[0]!.sync === 'SYNCED' ? all : undefined;
    }, 10_000).catch(async (e: Error) => assert.fail(`${e.message}: ${JSON.stringify(await seen())}`));
    assert.equal(synced[0]!.ackedVersion, version);
  });
});
