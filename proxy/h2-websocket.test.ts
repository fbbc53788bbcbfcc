// WebSocket over HTTP/2 (RFC 8441, extended CONNECT) through the proxies: the
// proxy's HTTP/2 servers say SETTINGS_ENABLE_CONNECT_PROTOCOL, and a CONNECT
// with :protocol websocket goes on as one, its stream then carrying the
// WebSocket's frames both ways. The app is a node:http2 server that takes
// extended CONNECT and hands the stream to the `ws` package's WebSocket (a
// real peer: it refuses unmasked client frames); the client is node:http2,
// writing masked frames by hand (ws has no HTTP/2 client). Through a sidecar
// pair on loopback and through one outbound proxy.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { PLAIN_CLIENT_ADDRESS, pairAndPlain } from './testdata/mesh.js';

/** ws's WebSocket as its server makes one: given its connection once the handshake is done. */
type ServerSideWebSocket = WebSocket & { setSocket(socket: Duplex, head: Buffer, options: { maxPayload: number }): void };

/** A masked client frame (RFC 6455 5.2) of `payload`: text, or close with its code. */
function clientFrame(opcode: 0x1 | 0x8, payload: Buffer): Buffer {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([head, mask, body]);
}

/** Reads the server's (unmasked) frames off a stream: [opcode, payload] each. */
function serverFrames(stream: ClientHttp2Stream): { frames: [number, Buffer][]; next: () => Promise<[number, Buffer]> } {
  let buf = Buffer.alloc(0);
  const frames: [number, Buffer][] = [];
  let wake: (() => void) | undefined;
  stream.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) break;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        at = 4;
      }
      if (buf.length < at + len) break;
      frames.push([buf[0]! & 0x0f, buf.subarray(at, at + len)]);
      buf = buf.subarray(at + len);
    }
    wake?.();
  });
  let read = 0;
  const next = async (): Promise<[number, Buffer]> => {
    while (frames.length <= read) await new Promise<void>((r) => (wake = r));
    return frames[read++]!;
  };
  return { frames, next };
}

describe('WebSocket over HTTP/2 (extended CONNECT) through the proxies', function () {
  this.timeout(30_000);
  let app: Http2Server;
  let a: Sidecar;
  let b: Sidecar;
  const sessions: ClientHttp2Session[] = [];
  /** What the app saw of each CONNECT. */
  const connects: IncomingHttpHeaders[] = [];
  /** Each CONNECT stream's close at the app. */
  const appClosed: Promise<unknown>[] = [];

  before(async () => {
    const { ca } = await newRootCa();
    app = createH2cServer({ settings: { enableConnectProtocol: true } });
    app.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => stream.destroy());
      if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
        stream.respond({ ':status': 400 });
        stream.end();
        return;
      }
      connects.push(headers);
      appClosed.push(once(stream, 'close'));
      stream.respond({ ':status': 200 });
      // The stream is the WebSocket's connection: ws takes it as the server's side, as its
      // WebSocketServer does a socket after the HTTP/1.1 handshake (a WebSocket made with no address).
      const ws = new (WebSocket as unknown as new (address: null, protocols: undefined, options: object) => ServerSideWebSocket)(null, undefined, {});
      ws.setSocket(stream, Buffer.alloc(0), { maxPayload: 1 << 20 });
      ws.on('error', () => undefined);
      ws.on('message', (m: Buffer) => {
        if (m.toString() === 'bye') ws.close(4000, 'as you wish');
        else ws.send(`echo ${m.toString()}`);
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    ({ a, b } = await pairAndPlain(ca, (app.address() as AddressInfo).port));
  });

  after(async () => {
    for (const s of sessions) s.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
  });

  for (const [name, from] of [
    ['a sidecar pair', '127.0.0.1'],
    ['one outbound proxy', PLAIN_CLIENT_ADDRESS],
  ] as const) {
    it(`through ${name}: the proxy allows extended CONNECT, and a WebSocket echoes, then closes with its code`, async () => {
      const session = h2connect(`http://127.0.0.1:${a.outboundPort}`, { createConnection: () => connect({ host: '127.0.0.1', port: a.outboundPort, localAddress: from }) });
      sessions.push(session);
      await once(session, 'remoteSettings');
      assert.equal(session.remoteSettings.enableConnectProtocol, true, 'the proxy says SETTINGS_ENABLE_CONNECT_PROTOCOL');
      connects.length = 0;
      const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/chat?room=1', ':scheme': 'http', ':authority': 'api.shop', 'sec-websocket-version': '13' });
      const [head] = (await once(stream, 'response')) as [IncomingHttpHeaders];
      assert.equal(head[':status'], 200);
      assert.equal(connects[0]?.[':protocol'], 'websocket');
      assert.equal(connects[0]?.[':path'], '/chat?room=1');
      assert.equal(connects[0]?.['sec-websocket-version'], '13');
      const { next } = serverFrames(stream);
      for (const text of ['hello', 'x'.repeat(1000)]) {
        stream.write(clientFrame(0x1, Buffer.from(text)));
        const [opcode, payload] = await next();
        assert.deepEqual([opcode, payload.toString()], [0x1, `echo ${text}`]);
      }
      stream.write(clientFrame(0x1, Buffer.from('bye')));
      const [opcode, payload] = await next();
      assert.deepEqual([opcode, payload.readUInt16BE(0), payload.subarray(2).toString()], [0x8, 4000, 'as you wish']);
      const code = Buffer.alloc(2);
      code.writeUInt16BE(4000);
      stream.end(clientFrame(0x8, code));
      stream.resume();
      await once(stream, 'close');
      await appClosed.at(-1);
    });
  }
});
