// A pod's opaque ports (the annotation tsmesh.io/opaque-ports, which the
// injector hands the proxy as TSMESH_OPAQUE_PORTS) are carried as opaque TCP
// over mTLS with no protocol detection: a server-first protocol (a
// database's greeting) on a port its Service leaves to detection waits for
// no sniff timeout. Through a sidecar pair on loopback, to an app that
// speaks first: with the port listed, the greeting arrives at once; without,
// it waits for the outbound listener's sniff timeout (1 s), which is what
// the setting is for.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { readProxySettings } from './env.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const DB = 'spiffe://cluster.local/ns/shop/sa/db';
const DB_IP = '10.96.0.40';
const DB_PORT = 5432;
const GREETING = 'HELLO from db\r\n';

/** The time from connect to the app's greeting through `port` (an explicit outbound listener of a sidecar), and what came. */
async function greeting(port: number): Promise<{ ms: number; text: string }> {
  const t0 = performance.now();
  const socket = connect({ host: '127.0.0.1', port });
  socket.setEncoding('utf8');
  let text = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no greeting in 5 s (got ${JSON.stringify(text)})`)), 5000);
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.length >= GREETING.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      socket.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  } finally {
    socket.destroy();
  }
  return { ms: performance.now() - t0, text };
}

describe('opaque ports of a pod (TSMESH_OPAQUE_PORTS): no protocol detection, through a sidecar pair on loopback', function () {
  this.timeout(20_000);
  const stops: (() => unknown)[] = [];
  let db: Server;
  /** web's sidecars: one with the port listed opaque (the annotation), one without. */
  let opaque: Sidecar;
  let detected: Sidecar;

  before(async () => {
    const { ca } = await newRootCa();
    // A server-first app: it greets each connection before reading anything.
    db = createServer((s) => {
      s.on('error', () => s.destroy());
      s.end(GREETING);
    });
    db.listen(0, '127.0.0.1');
    await once(db, 'listening');
    stops.push(() => db.close());
    const appPort = (db.address() as AddressInfo).port;
    const b = await loopbackSidecar(ca, DB, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    stops.push(() => b.drain(0));
    // The Service port names no protocol: left to detection.
    const config = new FixedConfig({ services: [{ name: 'db', namespace: 'shop', clusterIPs: [DB_IP], ports: [{ port: DB_PORT, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: DB }] }] });
    const explicitOutbound = [{ port: 0, destination: { address: DB_IP, port: DB_PORT, family: 'IPv4' as const } }];
    // As the proxy reads the injector's variable.
    const { opaquePorts } = readProxySettings({ TSMESH_OPAQUE_PORTS: `${DB_PORT},6000-6001` });
    opaque = await loopbackSidecar(ca, WEB, config, { explicitOutbound, opaquePorts });
    stops.push(() => opaque.drain(0));
    detected = await loopbackSidecar(ca, WEB, config, { explicitOutbound });
    stops.push(() => detected.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  it('a listed port: the greeting of a server-first app arrives at once, over mTLS', async () => {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const g = await greeting(opaque.explicitOutboundPorts[0]!);
      assert.equal(g.text, GREETING);
      times.push(Math.round(g.ms));
    }
    assert.ok(Math.max(...times) < 500, `the greeting came after ${times.join(', ')} ms: the port was sniffed`);
    const m = await opaque.metrics.registry.metrics();
    assert.match(m, /tsmesh_tcp_connections_opened_total\{direction="outbound",destination_service="db\.shop",tls="true"\} 3/);
  });

  it('the same port not listed: the greeting waits for the sniff timeout', async () => {
    const g = await greeting(detected.explicitOutboundPorts[0]!);
    assert.equal(g.text, GREETING);
    assert.ok(g.ms >= 900, `the greeting came after ${Math.round(g.ms)} ms`);
  });
});
