// The control plane's admin server: the dashboard's page and JSON are there
// only when it has proxies to scrape, and the page needs nothing else.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createAdminServer, MESH_VIEW_PATH } from './admin.js';
import type { MeshView } from './observe/view.js';
import { dashboardApi } from './observe/api.js';
import { MeshObserver } from './observe/observer.js';
import { parseMeshFile } from './sources/file.js';
import { silentLogger } from '../lib/log.js';

const VIEW: MeshView = { generatedAt: '2025-01-01T00:00:00.000Z', windowSeconds: 10, workloads: [], edges: [], proxies: [] };

async function serve(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('control plane admin server', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  it('serves the dashboard page, self-contained, and the mesh view as JSON', async () => {
    const server = createAdminServer({ registry: new Registry(), readiness: () => undefined, meshView: () => VIEW });
    servers.push(server);
    const base = await serve(server);
    const page = await fetch(`${base}/`);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    const html = await page.text();
    assert.match(html, /fetch\(API/);
    assert.ok(html.includes(`var API = "${MESH_VIEW_PATH}";`));
    // One page, nothing fetched from elsewhere: no script, style or image by URL.
    assert.doesNotMatch(html, /<script[^>]+src=|<link|<img|https?:\/\//);
    const api = await fetch(`${base}${MESH_VIEW_PATH}`);
    assert.equal(api.headers.get('content-type'), 'application/json');
    assert.deepEqual(await api.json(), VIEW);
  });

  it('answers 404 for the dashboard without a mesh view, naming the paths it has', async () => {
    const server = createAdminServer({ registry: new Registry(), readiness: () => undefined });
    servers.push(server);
    const base = await serve(server);
    for (const path of ['/', MESH_VIEW_PATH]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 404);
      assert.equal(await res.text(), 'not found; try /metrics, /healthz, /readyz\n');
    }
  });

  it("serves the dashboard's history and a workload's policies, and says what is wrong with a bad query", async () => {
    const observer = new MeshObserver({ targets: () => [], log: silentLogger });
    const model = parseMeshFile({
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'Mesh',
      mesh: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' },
      services: [{ name: 'ratings', namespace: 'demo', clusterIPs: ['10.96.0.30'], ports: [{ port: 80, protocol: 'http', targetPort: 8080 }], endpoints: [{ address: '10.244.0.9', serviceAccount: 'ratings' }] }],
      authorizationPolicies: [{ name: 'ratings-callers', namespace: 'demo', targetRef: { kind: 'Service', name: 'ratings' }, rules: [{ serviceAccounts: ['demo/api'] }] }],
    });
    let current: typeof model | undefined;
    const server = createAdminServer({ registry: new Registry(), readiness: () => undefined, meshView: () => VIEW, dashboardApi: dashboardApi({ observer, model: () => current }) });
    servers.push(server);
    const base = await serve(server);
    const get = async (path: string): Promise<[number, Record<string, unknown>]> => {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.headers.get('content-type'), 'application/json');
      return [res.status, (await res.json()) as Record<string, unknown>];
    };
    try {
      assert.deepEqual(await get('/api/v1/history'), [200, { intervalSeconds: 10, points: 90, workloads: {}, edges: {}, droppedSeries: 0 }]);
      assert.deepEqual(await get('/api/v1/policies?workload=demo/ratings'), [503, { error: 'the control plane has no mesh model yet (its source has not synced)' }]);
      current = model;
      const [status, policies] = await get('/api/v1/policies?workload=demo/ratings');
      assert.equal(status, 200);
      assert.deepEqual((policies.inbound as { authorizationPolicies: { name: string }[] }).authorizationPolicies.map((a) => a.name), ['ratings-callers']);
      const [bad, why] = await get('/api/v1/history?workload=ratings');
      assert.equal(bad, 400);
      assert.match(why.error as string, /workload must be namespace\/name .*got "ratings"/);
      assert.deepEqual(await get('/api/v1/policies'), [400, { error: 'which workload? pass ?workload=namespace/name' }]);
      assert.equal((await fetch(`${base}/healthz`)).status, 200, 'other paths as before');
    } finally {
      observer.close();
    }
  });
});
