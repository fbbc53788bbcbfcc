// The proxy's postStart hook, run as kubelet runs it: `node -e` with the
// script the webhook writes, against an admin port on loopback that refuses,
// then answers 503, then 200.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { proxyContainer, readyWaitScript, READY_WAIT_SECONDS } from './sidecar.js';
import { DEFAULT_PROXY_RESOURCES, type MeshConfig } from './mesh-config.js';
import type { Overrides } from './overrides.js';

function runHook(script: string): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  return once(child, 'exit').then(([code]) => ({ code: code as number | null, ms: Date.now() - t0 }));
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

describe('webhook/sidecar: the proxy waits in postStart until it is ready', function () {
  let server: Server | undefined;
  afterEach(async function () {
    if (server?.listening) {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    }
  });

  it('the hook returns once /ready answers 200: not while the port refuses, nor while it answers 503', async function () {
    const port = await freePort();
    let ready = false;
    let asked = 0;
    const hook = runHook(readyWaitScript(port, 20));
    // Nothing listens for 600 ms: the hook keeps trying.
    await new Promise((r) => setTimeout(r, 600));
    server = createServer((req, res) => {
      assert.equal(req.url, '/ready');
      asked++;
      res.writeHead(ready ? 200 : 503).end(ready ? 'ready\n' : 'not ready: no certificate yet\n');
    }).listen(port, '127.0.0.1');
    await once(server, 'listening');
    await new Promise((r) => setTimeout(r, 600));
    const readyAt = Date.now();
    ready = true;
    const { code } = await hook;
    assert.equal(code, 0);
    assert.ok(Date.now() >= readyAt, 'returned only after /ready said 200');
    assert.ok(asked >= 3, `asked ${asked} times: during the 503s, then once more`);
  });

  it('exits 0 when the proxy is not ready in time (a failing hook would kill the proxy; the startup probe judges it)', async function () {
    const { code, ms } = await runHook(readyWaitScript(await freePort(), 1));
    assert.equal(code, 0);
    assert.ok(ms >= 1000 && ms < 10_000, `gave up after ${ms} ms`);
  });

  it('the proxy container carries the hook on its admin port, and the startup probe covers the rest of the 120 s', function () {
    const mesh: MeshConfig = { image: 'tsmesh:test', imagePullPolicy: 'IfNotPresent', trustDomain: 'cluster.local', controlPlaneAddress: 'cp:15012', proxyResources: DEFAULT_PROXY_RESOURCES, logLevel: 'info' };
    const overrides: Overrides = { resources: DEFAULT_PROXY_RESOURCES, opaquePorts: [], logLevel: 'info', skipInboundPorts: [], skipOutboundPorts: [], skipOutboundCidrs: [] };
    const c = proxyContainer(mesh, overrides, {});
    assert.deepEqual(c.lifecycle?.postStart?.exec?.command, ['node', '-e', readyWaitScript()]);
    assert.match(readyWaitScript(), /port: 15020, path: '\/ready'/);
    const probe = c.startupProbe!;
    assert.equal(probe.httpGet?.path, '/ready');
    assert.equal(READY_WAIT_SECONDS + probe.periodSeconds! * probe.failureThreshold!, 120);
  });
});
