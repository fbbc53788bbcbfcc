// Sidecars on loopback under floods of connections that never show their
// protocol: idle or trickled-ClientHello ones on B's inbound listener (anyone
// who reaches the pod) and idle ones on an outbound listener (the app's side),
// held by a process of their own. Meanwhile the app's requests through to B
// (mTLS) must be answered, the connections waiting on their first bytes stay
// within the bound, and the ones beyond it are shed and counted.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { buildRoutingTable } from './config/table.js';
import { EndpointPools } from './http/forward.js';
import { H2Sessions } from './http/h2-forward.js';
import type { WorkloadCredentials } from './identity/types.js';
import { createProxyMetrics } from './metrics.js';
import { DEFAULT_PENDING_LIMIT } from './net/waiting.js';
import { createOutbound } from './outbound/listener.js';
import { TrafficState } from './outbound/traffic-state.js';
import { Telemetry } from './telemetry/state.js';
import type { Sidecar } from './sidecar.js';
import { startFlood, stopFlood } from './testdata/flood.js';
import { FixedConfig, FixedIdentity, issueCredentials } from './testdata/mesh.js';
import { apiService, SERVICE_IP, startApiSidecar, startOkApp, startWebSidecar, WEB } from './testdata/shop.js';
import { MeshTls } from './tls/mesh-tls.js';

const FLOOD = DEFAULT_PENDING_LIMIT + 100;

describe('sidecars under floods of connections that never show their protocol', function () {
  this.timeout(90_000);
  let app: HttpServer;
  let a: Sidecar;
  let b: Sidecar;
  let flood: ChildProcess | undefined;
  let webCreds: WorkloadCredentials;

  before(async () => {
    const { ca } = await newRootCa();
    let appPort: number;
    ({ server: app, port: appPort } = await startOkApp());
    b = await startApiSidecar(ca, appPort);
    webCreds = issueCredentials(ca, WEB);
    a = await startWebSidecar(webCreds, b.inboundPort);
  });
  afterEach(async () => {
    await stopFlood(flood);
    flood = undefined;
  });
  after(async () => {
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
  });

  /** The app's request through A to B, on a new connection; its status and time. */
  async function call(): Promise<{ status: number; ms: number }> {
    const started = performance.now();
    const res = await request(`http://127.0.0.1:${a.outboundPort}/orders`, { headers: { host: 'api.shop', connection: 'close' }, headersTimeout: 5000, bodyTimeout: 5000 });
    assert.equal(await res.body.text(), 'ok');
    return { status: res.statusCode, ms: performance.now() - started };
  }

  async function refused(s: Sidecar, direction: string, reason: string): Promise<number> {
    const m = await s.metrics.connectionsRefused.get();
    return m.values.find((v) => v.labels.direction === direction && v.labels.reason === reason)?.value ?? 0;
  }

  /** Connections B closed before any request, whatever the reason (shed for the bound, or a first-bytes deadline that came first). */
  async function refusedInbound(s: Sidecar): Promise<number> {
    const m = await s.metrics.connectionsRefused.get();
    return m.values.filter((v) => v.labels.direction === 'inbound').reduce((sum, v) => sum + v.value, 0);
  }

  /** Every connection of the flood is closed: B holds at most A's pooled mTLS connection. */
  async function floodClosed(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (b.openConnections() > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(b.openConnections() <= 1, `B still holds ${b.openConnections()} connections`);
  }

  for (const mode of ['idle', 'hello'] as const) {
    it(`inbound: ${FLOOD} ${mode === 'idle' ? 'idle connections' : 'connections trickling a ClientHello'} from another address hold at most ${DEFAULT_PENDING_LIMIT}, and mTLS callers are served`, async () => {
      const shedBefore = await refused(b, 'inbound', 'overload');
      const closedBefore = await refusedInbound(b);
      flood = await startFlood(b.inboundPort, FLOOD, mode, { from: '127.0.0.2', once: true });
      const calls = [];
      for (let i = 0; i < 10; i++) {
        calls.push(await call());
        assert.ok(b.openConnections() <= DEFAULT_PENDING_LIMIT + 2, `B holds ${b.openConnections()} connections`);
      }
      assert.deepEqual(
        calls.filter((c) => c.status !== 200),
        [],
      );
      const slowest = Math.max(...calls.map((c) => c.ms));
      assert.ok(slowest < 1000, `slowest call ${slowest.toFixed(0)} ms`);
      // Beyond the bound, B closed connections: shed as overload, or (when the flood took long to open
      // on a busy machine) at the first-bytes deadline before it was ever over the bound.
      // The flood counts a connection open once the kernel has it, which may be before B accepts it
      // (the listen backlog holds thousands): B's count catches up as it accepts them.
      const deadline = Date.now() + 10_000;
      let closed: number;
      while ((closed = (await refusedInbound(b)) - closedBefore) < FLOOD - DEFAULT_PENDING_LIMIT && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const shed = (await refused(b, 'inbound', 'overload')) - shedBefore;
      assert.ok(closed >= FLOOD - DEFAULT_PENDING_LIMIT, `closed ${closed} (shed ${shed})`);
      await stopFlood(flood);
      flood = undefined;
      await floodClosed();
    });
  }

  it('outbound: connections of the app still being sniffed beyond the bound shed the oldest, and its requests are served', async () => {
    // A real outbound listener built as the sidecar builds it, with a bound of 100 and a 5 s sniff, so a
    // flood on loopback fills it (the default is 1,024 within the 1 s sniff timeout).
    const limit = 100;
    const config = new FixedConfig(apiService(b.inboundPort));
    const metrics = createProxyMetrics();
    const meshTls = new MeshTls(new FixedIdentity(webCreds));
    const outbound = createOutbound({
      log: silentLogger,
      metrics,
      pools: new EndpointPools(meshTls),
      h2: new H2Sessions(meshTls),
      meshTls,
      table: () => buildRoutingTable(config.current()),
      traffic: new TrafficState(),
      telemetry: new Telemetry({ log: silentLogger, counters: { exported: () => undefined, dropped: () => undefined }, workload: () => ({ serviceName: 'web.shop' }) }),
      originalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
      ownPorts: new Set(),
      sniffTimeoutMs: 5000,
      pendingLimit: limit,
    });
    outbound.server.listen(0, '127.0.0.1');
    await once(outbound.server, 'listening');
    const port = (outbound.server.address() as AddressInfo).port;
    try {
      flood = await startFlood(port, 3 * limit, 'idle', { once: true });
      const shed = async (): Promise<number> => (await metrics.connectionsRefused.get()).values.find((v) => v.labels.reason === 'overload')?.value ?? 0;
      const deadline = Date.now() + 2000;
      while ((await shed()) < 2 * limit && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await shed(), 2 * limit);
      assert.ok(outbound.connections.size <= limit, `${outbound.connections.size} connections open`);
      for (let i = 0; i < 5; i++) {
        const res = await request(`http://127.0.0.1:${port}/orders`, { headers: { host: 'api.shop', connection: 'close' }, headersTimeout: 5000 });
        assert.equal(res.statusCode, 200);
        assert.equal(await res.body.text(), 'ok');
      }
      await stopFlood(flood);
      flood = undefined;
      const closed = Date.now() + 5000;
      while (outbound.connections.size > 0 && Date.now() < closed) await new Promise((r) => setTimeout(r, 50));
      assert.equal(outbound.connections.size, 0);
    } finally {
      outbound.server.close();
      for (const s of outbound.connections) s.destroy();
      meshTls.close();
    }
  });
});
