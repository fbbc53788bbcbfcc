// The control plane's admin server: the dashboard's page and JSON are there
// only when it has proxies to scrape, and the page needs nothing else.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createAdminServer, MESH_VIEW_PATH } from './admin.js';
import type { MeshView } from './observe/view.js';

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
});
