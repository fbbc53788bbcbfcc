// HTTP/1.1 Upgrade (WebSocket) and interim (1xx) responses through the
// proxy's own server and forwarder, between real sockets on loopback: a
// client (the `ws` package, or raw bytes) -> createHttpServer -> forward()
// -> an app (the `ws` package's server, or a raw node:net one that writes
// what node:http would not: 101 with bytes after it, 103, a 101 nobody
// asked for).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpApp } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { silentLogger } from '../../../lib/log.js';
import { EndpointPools, forward } from '../forward.js';
import { createHttpServer, type HttpServerOptions } from '../server.js';
import { EXPECT_CONTINUE_MS, MAX_INTERIM_RESPONSES } from './exchange.js';

interface Front {
  port: number;
  close(): Promise<void>;
}

/** The proxy in front of an app listening on `appPort`. */
async function proxyTo(appPort: number, opts: Partial<HttpServerOptions> = {}): Promise<Front> {
  const pools = new EndpointPools(undefined);
  const ep = { address: '127.0.0.1', port: appPort, identity: undefined };
  const proxy = createHttpServer({ log: silentLogger, handlerFor: () => (req) => forward(pools, ep, req), ...opts });
  const sockets = new Set<Socket>();
  // As the listeners accept: half-open allowed, no Nagle.
  const front = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    proxy.accept(s);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  return {
    port: (front.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      front.close();
      await pools.close();
    },
  };
}

/** A raw app: `onConnection` gets each socket the proxy opens, and what it reads. */
async function rawApp(onConnection: (s: Socket) => void): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** Reads from `s` until `text` has arrived; returns all it read. */
function readUntil(s: Socket, pattern: RegExp, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => (s.off('data', onData), reject(new Error(`not within ${ms} ms: ${pattern}; got ${JSON.stringify(got)}`))), ms);
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (pattern.test(got)) {
        clearTimeout(timer);
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
  });
}

/** Everything `s` sends until it closes (or `ms` passes). */
async function readAll(s: Socket, ms = 3000): Promise<string> {
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, ms))]);
  return got;
}

const UPGRADE_HEAD = 'GET /tunnel HTTP/1.1\r\nhost: app\r\nconnection: Upgrade\r\nupgrade: x-echo/1\r\n\r\n';

describe('HTTP/1.1 Upgrade through the proxy\'s own server and client', function () {
  this.timeout(20_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function wsRig(): Promise<{ wss: WebSocketServer; front: Front }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    const front = await proxyTo((wss.address() as AddressInfo).port);
    cleanups.push(() => void wss.close(), () => front.close());
    return { wss, front };
  }

  it('carries a WebSocket (ws client and server): 1,000 echoed messages, binary frames, ping and pong, close codes both ways', async () => {
    const { wss, front } = await wsRig();
    wss.on('connection', (ws, req) => {
      assert.equal(req.headers.upgrade, 'websocket');
      ws.on('message', (m: Buffer, binary) => {
        if (!binary && m.toString() === 'close-me') ws.close(4002, 'server says bye');
        else ws.send(m, { binary });
      });
    });
    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/chat`, ['chat.v1']);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    assert.equal(ws.protocol, 'chat.v1', 'the subprotocol the server chose came back');
    const echoed: string[] = [];
    await new Promise<void>((resolve) => {
      ws.on('message', (m: Buffer) => {
        echoed.push(m.toString());
        if (echoed.length === 1000) resolve();
        else ws.send(`message ${echoed.length}`);
      });
      ws.send('message 0');
    });
    assert.deepEqual(echoed, Array.from({ length: 1000 }, (_, i) => `message ${i}`));
    ws.removeAllListeners('message');
    // Binary frames, 1 MB each, byte for byte.
    const blob = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 7) & 0xff));
    ws.send(blob);
    const [back, binary] = (await once(ws, 'message')) as [Buffer, boolean];
    assert.equal(binary, true);
    assert.ok(back.equals(blob), 'the binary frame came back intact');
    // Ping from the client: the server's ws answers pong with the same payload.
    ws.ping('are you there');
    const [pong] = (await once(ws, 'pong')) as [Buffer];
    assert.equal(pong.toString(), 'are you there');
    // The server closes with its code and reason.
    ws.send('close-me');
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    assert.deepEqual([code, reason.toString()], [4002, 'server says bye']);
    // And a client closes with its own, which the server sees.
    const accepted = once(wss, 'connection');
    const ws2 = new WebSocket(`ws://127.0.0.1:${front.port}/chat`);
    await once(ws2, 'open');
    const [serverSide] = (await accepted) as [WebSocket];
    const closedOnServer = once(serverSide, 'close');
    // Ping from the server reaches the client, whose pong comes back.
    serverSide.ping('from the server');
    const [serverPong] = (await once(serverSide, 'pong')) as [Buffer];
    assert.equal(serverPong.toString(), 'from the server');
    ws2.close(4001, 'client says bye');
    const [serverCode, serverReason] = (await closedOnServer) as [number, Buffer];
    assert.deepEqual([serverCode, serverReason.toString()], [4001, 'client says bye']);
  });

  it('sends the upgrade on with its fields, and bytes either side sent with or right after its head', async () => {
    let request = '';
    const app = await rawApp((s) => {
      void readUntil(s, /\r\n\r\n/).then((head) => {
        request = head;
        // The 101 and the new protocol's first bytes in one write, as servers do.
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: x-echo/1\r\nx-app: 1\r\n\r\nhello from the app\n');
        s.on('data', (d: Buffer) => s.write(d.toString().toUpperCase()));
      });
    });
    cleanups.push(() => void app.server.close(), () => app.sockets.forEach((s) => s.destroy()));
    const front = await proxyTo(app.port);
    cleanups.push(() => front.close());
    const c = connect(front.port, '127.0.0.1');
    // The client speaks the new protocol at once, without waiting for the 101 (the proxy holds it until then).
    c.write(UPGRADE_HEAD + 'early bytes\n');
    const got = await readUntil(c, /EARLY BYTES\n/);
    assert.match(got, /^HTTP\/1.1 101 Switching Protocols\r\n/);
    assert.match(got, /\r\nx-app: 1\r\n/);
    assert.match(got, /\r\nconnection: upgrade\r\nupgrade: x-echo\/1\r\n\r\nhello from the app\nEARLY BYTES\n$/);
    assert.match(request, /^GET \/tunnel HTTP\/1.1\r\n/);
    assert.match(request, /\r\nconnection: upgrade\r\nupgrade: x-echo\/1\r\n/);
    assert.doesNotMatch(request, /early bytes/, 'the new protocol\'s bytes waited for the 101');
    c.write('more\n');
    assert.equal(await readUntil(c, /MORE\n/), 'MORE\n');
    c.destroy();
  });

  it('passes a half-close on each way: what is sent after one side ended still arrives, then both close', async () => {
    const appGot: string[] = [];
    let appSocket: Socket | undefined;
    const app = await rawApp((s) => {
      appSocket = s;
      void readUntil(s, /\r\n\r\n/).then(() => {
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-echo/1\r\n\r\n');
        s.on('data', (d: Buffer) => appGot.push(d.toString()));
        // The client ended its side: the app answers after it, then ends its own.
        s.once('end', () => setTimeout(() => s.end('answer after the client ended\n'), 100));
      });
    });
    cleanups.push(() => void app.server.close());
    const front = await proxyTo(app.port);
    cleanups.push(() => front.close());
    const c = connect({ port: front.port, host: '127.0.0.1', allowHalfOpen: true });
    c.write(UPGRADE_HEAD);
    await readUntil(c, /\r\n\r\n$/);
    c.end('last words\n');
    const rest = await readAll(c);
    assert.equal(rest, 'answer after the client ended\n');
    assert.deepEqual(appGot, ['last words\n']);
    assert.ok(c.destroyed);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(appSocket?.destroyed, 'the app\'s connection closed too');
    // The other way round: the app ends first, the client still sends, and then ends.
    const c2 = connect({ port: front.port, host: '127.0.0.1', allowHalfOpen: true });
    const app2 = new Promise<Socket>((resolve) => app.server.once('connection', resolve));
    c2.write(UPGRADE_HEAD);
    await readUntil(c2, /\r\n\r\n$/);
    const s2 = await app2;
    const appRead = readAll(s2);
    s2.end('app is done talking\n');
    await once(c2, 'end');
    c2.end('client still had this\n');
    assert.match(await appRead, /client still had this\n$/);
  });

  it('closes both sides when the tunnel is idle for its timeout, and when either side resets', async () => {
    const appSockets: Socket[] = [];
    const app = await rawApp((s) => {
      appSockets.push(s);
      void readUntil(s, /\r\n\r\n/).then(() => s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-echo/1\r\n\r\n'));
    });
    cleanups.push(() => void app.server.close());
    const front = await proxyTo(app.port, { tunnelIdleTimeoutMs: 300 });
    cleanups.push(() => front.close());
    const open = async (): Promise<Socket> => {
      const c = connect(front.port, '127.0.0.1');
      c.on('error', () => undefined);
      c.write(UPGRADE_HEAD);
      await readUntil(c, /\r\n\r\n$/);
      return c;
    };
    const idle = await open();
    const t0 = Date.now();
    await once(idle, 'close');
    const waited = Date.now() - t0;
    assert.ok(waited >= 250 && waited < 2000, `closed after ${waited} ms idle`);
    // The app's side was closed with it (the app, half-open allowed, sees its end).
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(appSockets[0]!.readableEnded || appSockets[0]!.destroyed, 'the app\'s side closed with it');
    // A reset from the client closes the app's side.
    const reset = await open();
    reset.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(appSockets[1]!.readableEnded || appSockets[1]!.destroyed);
    // A reset from the app closes the client's.
    const fromApp = await open();
    appSockets[2]!.resetAndDestroy();
    await once(fromApp, 'close');
  });

  it('answers 502 to a 101 the request did not ask for (what follows it is not read as the response), and to a 101 without Upgrade', async () => {
    let mode = 'unasked';
    const app = await rawApp((s) => {
      void readUntil(s, /\r\n\r\n/).then(() => {
        if (mode === 'unasked') s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-echo/1\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged');
        else s.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
      });
    });
    cleanups.push(() => void app.server.close(), () => app.sockets.forEach((s) => s.destroy()));
    const front = await proxyTo(app.port);
    cleanups.push(() => front.close());
    const c = connect(front.port, '127.0.0.1');
    c.write('GET /plain HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    const unasked = await readAll(c);
    assert.match(unasked, /^HTTP\/1.1 502 Bad Gateway\r\n/);
    assert.match(unasked, /101 Switching Protocols to a request that asked for no upgrade/);
    assert.doesNotMatch(unasked, /forged/);
    mode = 'no-upgrade-field';
    const c2 = connect(front.port, '127.0.0.1');
    c2.write(UPGRADE_HEAD);
    const bare = await readUntil(c2, /Upgrade field\n$/);
    c2.destroy();
    assert.match(bare, /^HTTP\/1.1 502 Bad Gateway\r\n/);
    assert.match(bare, /without an Upgrade field/);
  });

  it('declines an upgrade in HTTP/1.0 or with a body by serving the request as it is, without the field', async () => {
    const heads: string[] = [];
    const app = await rawApp((s) => {
      void readUntil(s, /\r\n\r\n/).then((head) => {
        heads.push(head);
        s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain');
      });
    });
    cleanups.push(() => void app.server.close());
    const front = await proxyTo(app.port);
    cleanups.push(() => front.close());
    for (const request of [
      'GET /old HTTP/1.0\r\nhost: app\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n',
      'POST /body HTTP/1.1\r\nhost: app\r\nconnection: upgrade, close\r\nupgrade: x-echo/1\r\ncontent-length: 4\r\n\r\nbody',
    ]) {
      const c = connect(front.port, '127.0.0.1');
      c.write(request);
      assert.match(await readAll(c), /^HTTP\/1.1 200 OK\r\n[\s\S]*plain$/, request);
    }
    assert.equal(heads.length, 2);
    for (const head of heads) assert.doesNotMatch(head, /upgrade/i);
  });

  it('keeps an upgrade the app declines an HTTP/1.1 exchange: its answer, then the next request on the same connection', async () => {
    const { wss, front } = await wsRig();
    wss.options.verifyClient = (_info: unknown, cb: (ok: boolean, code?: number) => void) => cb(false, 403);
    const c = connect(front.port, '127.0.0.1');
    c.write('GET /chat HTTP/1.1\r\nhost: app\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const declined = await readUntil(c, /\r\n\r\n[\s\S]*Forbidden$/);
    assert.match(declined, /^HTTP\/1.1 403 Forbidden\r\n/);
    assert.doesNotMatch(declined, /connection: upgrade/i);
    // The app closed its connection; the client's goes on (the ws server answers a plain request 426).
    c.write('GET /chat HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    assert.match(await readAll(c), /^HTTP\/1.1 426 Upgrade Required\r\n/);
  });

  it('takes an upgraded connection out of the pool: the next request opens another, and the tunnel goes on', async () => {
    // One app for plain requests and WebSockets, as most are.
    const http = createHttpApp((_req, res) => res.end('plain'));
    const wss = new WebSocketServer({ server: http });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const front = await proxyTo((http.address() as AddressInfo).port);
    cleanups.push(() => void wss.close(), () => http.closeAllConnections(), () => void http.close(), () => front.close());
    const connections: Socket[] = [];
    http.on('connection', (s: Socket) => connections.push(s));
    wss.on('connection', (ws) => ws.on('message', (m: Buffer) => ws.send(m)));
    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/chat`);
    await once(ws, 'open');
    const c = connect(front.port, '127.0.0.1');
    c.write('GET /plain HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    assert.match(await readAll(c), /200 OK[\s\S]*plain$/);
    assert.equal(connections.length, 2, 'the plain request did not go into the WebSocket\'s connection');
    ws.send('still here');
    const [m] = (await once(ws, 'message')) as [Buffer];
    assert.equal(m.toString(), 'still here');
    ws.close();
  });
});

describe('interim (1xx) responses through the proxy\'s own server and client', function () {
  this.timeout(20_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function rig(onConnection: (s: Socket) => void): Promise<Front> {
    const app = await rawApp(onConnection);
    cleanups.push(() => void app.server.close(), () => app.sockets.forEach((s) => s.destroy()));
    const front = await proxyTo(app.port);
    cleanups.push(() => front.close());
    return front;
  }

  it('forwards 103 Early Hints (and any 1xx) with their fields, in order, before the final response; none to an HTTP/1.0 client', async () => {
    const front = await rig((s) => {
      void readUntil(s, /\r\n\r\n/).then(() => {
        s.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n');
        setTimeout(() => {
          s.write('HTTP/1.1 103 Early Hints\r\nlink: </app.js>; rel=preload; as=script\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n');
          setTimeout(() => s.end('HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npage'), 50);
        }, 50);
      });
    });
    const c = connect(front.port, '127.0.0.1');
    c.write('GET /page HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    const first = await readUntil(c, /\r\n\r\n/);
    assert.equal(first, 'HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n', 'the first hint came before the app answered');
    const rest = await readAll(c);
    assert.match(rest, /^HTTP\/1.1 103 Early Hints\r\nlink: <\/app.js>; rel=preload; as=script\r\n\r\nHTTP\/1.1 102 Processing\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*\r\n\r\npage$/);
    const old = connect(front.port, '127.0.0.1');
    old.write('GET /page HTTP/1.0\r\nhost: app\r\n\r\n');
    assert.match(await readAll(old), /^HTTP\/1.1 200 OK\r\n[\s\S]*page$/);
  });

  it('hands the client at most MAX_INTERIM_RESPONSES interim responses a request, however many the app writes', async () => {
    const front = await rig((s) => {
      void readUntil(s, /\r\n\r\n/).then(() => {
        s.write('HTTP/1.1 103 Early Hints\r\nlink: </x.css>; rel=preload\r\n\r\n'.repeat(1000));
        s.end('HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone');
      });
    });
    const c = connect(front.port, '127.0.0.1');
    c.write('GET /flood HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    const got = await readAll(c);
    assert.equal(got.match(/HTTP\/1.1 103 Early Hints\r\n/g)?.length, MAX_INTERIM_RESPONSES);
    assert.match(got, /\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*done$/);
  });

  it('gives a client that expects 100-continue one 100: the app\'s, or the proxy\'s own after the wait, never two', async () => {
    let mode: 'continue-twice' | 'silent' | 'refuse' = 'continue-twice';
    const seen: string[] = [];
    const front = await rig((s) => {
      void readUntil(s, /\r\n\r\n/).then((head) => {
        seen.push(head);
        if (mode === 'refuse') {
          s.end('HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return;
        }
        // An app that says 100 twice (one unasked), or none: the body comes anyway.
        if (mode === 'continue-twice') s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n');
        void readUntil(s, /hello$/).then(() => s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
      });
    });
    const post = 'POST /upload HTTP/1.1\r\nhost: app\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n';
    const send = async (): Promise<{ text: string; continueAfterMs: number }> => {
      const c = connect(front.port, '127.0.0.1');
      const t0 = Date.now();
      c.write(post);
      const first = await readUntil(c, /\r\n\r\n/, 5000);
      const continueAfterMs = Date.now() - t0;
      if (first.startsWith('HTTP/1.1 100')) c.write('hello');
      return { text: first + (await readAll(c)), continueAfterMs };
    };
    const twice = await send();
    assert.match(twice.text, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*ok$/);
    assert.ok(twice.continueAfterMs < EXPECT_CONTINUE_MS / 2, `the app's 100 came through at once (${twice.continueAfterMs} ms)`);
    assert.match(seen[0]!, /\r\nexpect: 100-continue\r\n/, 'the expectation reached the app');
    mode = 'silent';
    const silent = await send();
    assert.match(silent.text, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*ok$/);
    assert.ok(silent.continueAfterMs >= EXPECT_CONTINUE_MS - 50, `the proxy's own 100 came after its wait for the app's (${silent.continueAfterMs} ms)`);
    mode = 'refuse';
    const refused = await send();
    assert.match(refused.text, /^HTTP\/1.1 413 [^\r]*\r\n[\s\S]*\r\n\r\n$/, 'a final answer instead of the 100: the body is never asked for');
  });
});
