// tsmesh/h2f (TSMESH_H2_FRAMES) through a sidecar pair on loopback, beyond
// what proxy/grpc-pair.test.ts runs over it: flow control per stream (a
// client that stops reading a large answer holds the app back, its writes
// waiting, instead of the sidecars taking the whole answer into memory, and
// gets all of it once it reads again), an endpoint whose sidecar speaks
// tsmesh/h2 only, reached over tsmesh/h2, and draining: GOAWAY.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, issueCredentials, loopbackSidecar } from './testdata/mesh.js';
import { MESH_ALPN } from './tls/alpn.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';
const LEGACY_IP = '10.96.0.11';
const LEGACY_CLIENT = '127.0.0.3';
const ANSWER_BYTES = 32 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'f');
const HEAD_TIMEOUT_MS = 400;

describe('tsmesh/h2f between a sidecar pair on loopback', function () {
  this.timeout(60_000);
  let app: Http2Server;
  let a: Sidecar;
  let b: Sidecar;
  let client: ClientHttp2Session;
  /** A sidecar of before tsmesh/h2f: mesh TLS offering tsmesh/h2 only, node:http2 behind it. */
  let older: TlsServer;
  /** A client certificate of the mesh, for a handshake of the test's own with b. */
  let meshClient: { cert: string; key: string; ca: string };
  /** Bytes of the answer the app's stream has taken so far (it waits for 'drain' when told to). */
  let written = 0;
  /** The app's streams of /hang, which it never answers. */
  const hung: ServerHttp2Stream[] = [];

  before(async () => {
    const { ca } = await newRootCa();
    app = createH2cServer();
    app.on('stream', (stream: ServerHttp2Stream, headers: Record<string, string>) => {
      stream.on('error', () => undefined);
      if (headers[':path'] === '/hang') {
        // Never answers: the caller's sidecar gives up after its response head timeout.
        hung.push(stream);
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
      const more = (): void => {
        while (written < ANSWER_BYTES) {
          written += CHUNK.length;
          if (written >= ANSWER_BYTES) {
            stream.end(CHUNK);
            return;
          }
          if (!stream.write(CHUNK)) {
            stream.once('drain', more);
            return;
          }
        }
      };
      more();
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    const web = issueCredentials(ca, WEB);
    meshClient = { cert: web.certChainPem, key: web.keyPem, ca: web.trustBundlePem };
    const creds = issueCredentials(ca, 'spiffe://cluster.local/ns/shop/sa/legacy');
    // As a sidecar serves tsmesh/h2: its own TLS server, and HTTP/2 over the TLS socket.
    const olderH2 = createH2cServer();
    olderH2.on('stream', (stream: ServerHttp2Stream) => stream.respond({ ':status': 200, 'x-served-by': 'tsmesh/h2' }, { endStream: true }));
    older = createTlsServer({ cert: creds.certChainPem, key: creds.keyPem, ca: creds.trustBundlePem, ALPNProtocols: [MESH_ALPN.http2] }, (socket) => olderH2.emit('connection', socket));
    older.listen(0, '127.0.0.1');
    await once(older, 'listening');
    const olderPort = (older.address() as AddressInfo).port;
    const services = [
      { name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, protocol: 'http2', targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] },
      { name: 'legacy', namespace: 'shop', clusterIPs: [LEGACY_IP], ports: [{ port: 80, protocol: 'http2', targetPort: olderPort }], endpoints: [{ address: '127.0.0.1', identity: creds.spiffeId }] },
    ];
    a = await loopbackSidecar(ca, WEB, new FixedConfig({ services }), {
      // Loopback has no redirect: a client from LEGACY_CLIENT is taken as dialling legacy, any other api.
      outboundOriginalDestination: (socket) => ({ address: socket.remoteAddress === LEGACY_CLIENT ? LEGACY_IP : SERVICE_IP, port: 80, family: 'IPv4' }),
      h2Frames: true,
      responseHeadTimeoutMs: HEAD_TIMEOUT_MS,
    });
    client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
  });

  after(async () => {
    client?.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
    older?.close();
  });

  it('holds the app back while the client does not read, and delivers the whole answer once it does', async () => {
    const s = client.request({ ':method': 'GET', ':path': '/large', ':authority': 'api.shop' });
    const [head] = (await once(s, 'response')) as [Record<string, string>];
    assert.equal(head[':status'], 200);
    // The client reads nothing for a while: what the app could write is what the windows and buffers on the way hold.
    await new Promise((r) => setTimeout(r, 1500));
    const held = written;
    assert.ok(held < ANSWER_BYTES / 4, `the app wrote ${held} bytes of ${ANSWER_BYTES} to a client that read none`);
    let received = 0;
    s.on('data', (d: Buffer) => (received += d.length));
    await once(s, 'end');
    assert.equal(received, ANSWER_BYTES);
  });

  it("answers 504 response-head-timeout to a request the app never answers, and resets the app's stream", async () => {
    const from = performance.now();
    const s = client.request({ ':method': 'GET', ':path': '/hang', ':authority': 'api.shop' }, { endStream: true });
    const [head] = (await once(s, 'response')) as [Record<string, string>];
    const ms = performance.now() - from;
    s.resume();
    assert.equal(head[':status'], 504);
    assert.equal(head['x-tsmesh-error'], 'response-head-timeout');
    assert.ok(ms >= HEAD_TIMEOUT_MS - 20 && ms < HEAD_TIMEOUT_MS + 2000, `answered after ${Math.round(ms)} ms with a ${HEAD_TIMEOUT_MS} ms timeout`);
    assert.equal(hung.length, 1);
    const appStream = hung[0]!;
    if (!appStream.closed) await once(appStream, 'close');
    assert.notEqual(appStream.rstCode, 0, "the app's stream was reset, not left open");
  });

  it('reaches an endpoint whose sidecar speaks tsmesh/h2 only over tsmesh/h2', async () => {
    const legacy = h2connect(`http://127.0.0.1:${a.outboundPort}`, { localAddress: LEGACY_CLIENT } as object);
    try {
      for (let i = 0; i < 2; i++) {
        const s = legacy.request({ ':method': 'GET', ':path': '/', ':authority': 'legacy.shop' }, { endStream: true });
        const [head] = (await once(s, 'response')) as [Record<string, string>];
        assert.equal(head[':status'], 200, `call ${i + 1}: ${head['x-tsmesh-error'] ?? ''}`);
        assert.equal(head['x-served-by'], 'tsmesh/h2');
        s.resume();
        await once(s, 'close');
      }
    } finally {
      legacy.close();
    }
  });

  it('is what a sidecar picks for a caller that offers it beside tsmesh/h2', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: b.inboundPort, ...meshClient, ALPNProtocols: [MESH_ALPN.frames, MESH_ALPN.http2], checkServerIdentity: () => undefined });
    try {
      await once(socket, 'secureConnect');
      assert.equal(socket.alpnProtocol, MESH_ALPN.frames);
    } finally {
      socket.destroy();
    }
  });

  // Last: b drains.
  it("lets a call in flight when the endpoint's sidecar drains go on to its end, then lets the connection go", async () => {
    written = 0;
    const s = client.request({ ':method': 'GET', ':path': '/large', ':authority': 'api.shop' });
    await once(s, 'response');
    const from = performance.now();
    const drained = b.drain(20_000);
    let received = 0;
    s.on('data', (d: Buffer) => (received += d.length));
    await once(s, 'end');
    assert.equal(received, ANSWER_BYTES, 'the whole answer');
    await drained;
    const ms = performance.now() - from;
    assert.ok(ms < 10_000, `the drain took ${Math.round(ms)} ms of its 20,000: the caller kept its idle connection`);
  });
});
