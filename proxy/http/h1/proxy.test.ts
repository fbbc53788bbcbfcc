// The proxy's own HTTP/1.1 server and client, back to back, between real
// sockets on loopback: a client (raw bytes or node:http) -> createHttpServer
// -> forward() over EndpointPools -> a node:http app.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Agent, createServer as createApp, request, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { silentLogger } from '../../../lib/log.js';
import { EndpointPools, forward } from '../forward.js';
import { createHttpServer, MIN_BODY_PROGRESS, type ProxyHttpServer } from '../server.js';

type Limits = { headersTimeoutMs?: number; keepAliveTimeoutMs?: number; bodyIdleTimeoutMs?: number };

/** The proxy in front of an app listening on TCP: its port, the proxy, and how to close both. */
interface Front {
  port: number;
  proxy: ProxyHttpServer;
  close(): Promise<void>;
}

/** A raw TCP app (for responses node:http would not send) or a node:http one, behind the proxy. */
async function proxyFor(app: Server, limits: Limits = {}): Promise<Front> {
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const pools = new EndpointPools(undefined);
  const ep = { address: '127.0.0.1', port: (app.address() as AddressInfo).port, identity: undefined };
  const proxy = createHttpServer({ log: silentLogger, handlerFor: () => (req) => forward(pools, ep, req), ...limits });
  const sockets = new Set<Socket>();
  const front = createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    proxy.accept(s);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  return {
    port: (front.address() as AddressInfo).port,
    proxy,
    async close() {
      for (const s of sockets) s.destroy();
      front.close();
      app.close();
      await pools.close();
    },
  };
}

interface Rig extends Front {
  /** The app's connections, each opened by the proxy. */
  appSockets: Set<Socket>;
}

async function rig(app: (req: IncomingMessage, res: ServerResponse) => void, limits: Limits = {}): Promise<Rig> {
  const appServer: HttpServer = createApp(app);
  const appSockets = new Set<Socket>();
  appServer.on('connection', (s: Socket) => appSockets.add(s));
  const front = await proxyFor(appServer, limits);
  return {
    ...front,
    appSockets,
    async close() {
      await front.close();
      appServer.closeAllConnections();
    },
  };
}

/** Sends raw bytes, returns everything the proxy sent until it closed (or `untilMs` passed). */
async function raw(port: number, bytes: string | Buffer, untilMs = 2000): Promise<string> {
  const s = connect(port, '127.0.0.1');
  let out = '';
  s.setEncoding('latin1').on('data', (d: string) => (out += d));
  s.on('error', () => undefined);
  s.write(bytes);
  // (Not events.once: a connection the proxy resets would reject it with the reset.)
  await Promise.race([new Promise((r) => s.once('close', r)), new Promise((r) => setTimeout(r, untilMs))]);
  s.destroy();
  return out;
}

/** node:http through the proxy, on one keep-alive agent unless told otherwise. */
function call(port: number, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer; chunked?: boolean; agent?: Agent }): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers = { ...opts.headers };
    if (opts.body && !opts.chunked) headers['content-length'] = String(opts.body.length);
    const r = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers, agent: opts.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    r.on('error', reject);
    if (opts.body && opts.chunked) {
      // Several writes without a length: node:http sends them chunked.
      for (let i = 0; i < opts.body.length; i += 4096) r.write(opts.body.subarray(i, i + 4096));
      r.end();
    } else r.end(opts.body);
  });
}

async function waitUntil(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('HTTP/1.1 through the proxy\'s own server and client', () => {
  let r: Rig | undefined;
  afterEach(async () => {
    await r?.close();
    r = undefined;
  });

  it('carries many requests over one kept-alive connection each side, bodies intact', async () => {
    r = await rig((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`${req.method} ${req.url} ${sha(Buffer.concat(chunks))}`));
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 50; i++) {
        const body = randomBytes(1024 + i);
        const res = await call(r.port, { method: 'POST', path: `/n/${i}`, body, agent });
        assert.equal(res.body.toString(), `POST /n/${i} ${sha(body)}`);
      }
    } finally {
      agent.destroy();
    }
    assert.equal(r.appSockets.size, 1, 'the proxy reused one connection to the app');
  });

  it('streams a 4 MB chunked upload and a 4 MB chunked download, byte for byte', async () => {
    const download = randomBytes(4 << 20);
    r = await rig((req, res) => {
      const h = createHash('sha256');
      req.on('data', (c: Buffer) => h.update(c));
      req.on('end', () => {
        res.setHeader('x-upload-sha', h.digest('hex'));
        for (let i = 0; i < download.length; i += 65536) res.write(download.subarray(i, i + 65536));
        res.end();
      });
    });
    const upload = randomBytes(4 << 20);
    const res = await call(r.port, { method: 'PUT', body: upload, chunked: true });
    assert.equal(res.headers['x-upload-sha'], sha(upload));
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.equal(sha(res.body), sha(download));
  });

  it('answers pipelined requests in order', async () => {
    r = await rig((req, res) => setTimeout(() => res.end(`you asked ${req.url}`), req.url === '/slow' ? 50 : 0));
    const out = await raw(r.port, 'GET /slow HTTP/1.1\r\nhost: a\r\n\r\nGET /fast HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    const slow = out.indexOf('you asked /slow');
    const fast = out.indexOf('you asked /fast');
    assert.ok(slow !== -1 && fast > slow, `both answered, in order: ${JSON.stringify(out)}`);
  });

  it('keeps a HEAD response\'s Content-Length and sends no body; 204 gets no length', async () => {
    r = await rig((req, res) => {
      if (req.url === '/none') res.writeHead(204).end();
      else res.writeHead(200, { 'content-length': '11' }).end(req.method === 'HEAD' ? undefined : 'hello world');
    });
    const head = await raw(r.port, 'HEAD / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    assert.match(head, /^HTTP\/1.1 200 OK\r\n/);
    assert.match(head, /content-length: 11\r\n/);
    assert.ok(head.endsWith('\r\n\r\n'), `no body after a HEAD response: ${JSON.stringify(head)}`);
    const none = await raw(r.port, 'GET /none HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    assert.match(none, /^HTTP\/1.1 204 No Content\r\n/);
    assert.doesNotMatch(none, /content-length|transfer-encoding/);
  });

  it('passes Expect: 100-continue on to the app, whose 100 Continue reaches the client once, then forwards the body', async () => {
    const expected: (string | undefined)[] = [];
    r = await rig((req, res) => {
      expected.push(req.headers.expect);
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    });
    const s = connect(r.port, '127.0.0.1');
    s.setEncoding('latin1');
    s.write('POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n');
    const [first] = (await once(s, 'data')) as [string];
    assert.match(first, /^HTTP\/1.1 100 Continue\r\n\r\n/);
    s.write('hello');
    let out = first;
    s.on('data', (d: string) => (out += d));
    await once(s, 'close');
    assert.match(out, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK[\s\S]*got 5$/);
    assert.deepEqual(expected, ['100-continue'], 'node:http answered the 100 itself: it saw the expectation');
  });

  it('answers 400 to a smuggling attempt, 431 to an oversized head and 408 to a slow one, and never reaches the app', async () => {
    let reached = 0;
    r = await rig(
      (_req, res) => {
        reached++;
        res.end('app');
      },
      { headersTimeoutMs: 300 },
    );
    assert.match(await raw(r.port, 'POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'), /^HTTP\/1.1 400 Bad Request\r\n/);
    assert.match(await raw(r.port, `GET / HTTP/1.1\r\nhost: a\r\nx-big: ${'a'.repeat(70_000)}\r\n\r\n`), /^HTTP\/1.1 431 Request Header Fields Too Large\r\n/);
    assert.match(await raw(r.port, 'GET / HTTP/1.1\r\nhost: a\r\n'), /^HTTP\/1.1 408 Request Timeout\r\n/);
    assert.match(await raw(r.port, '\x16\x03\x01garbage\r\n\r\n'), /^HTTP\/1.1 400 Bad Request\r\n/);
    assert.equal(reached, 0);
    // And it still serves.
    assert.match(await raw(r.port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n'), /200 OK[\s\S]*app$/);
  });

  it('serves an h2c upgrade as HTTP/1.1, and an Upgrade the Connection header does not name as a plain request', async () => {
    const seen: IncomingMessage['headers'][] = [];
    r = await rig((req, res) => {
      seen.push(req.headers);
      res.end('app');
    });
    // An Upgrade the Connection header does not name is no upgrade request: a plain GET, without the field.
    assert.match(await raw(r.port, 'GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: close\r\n\r\n'), /200 OK[\s\S]*app$/);
    // h2c: the upgrade is declined by answering in HTTP/1.1, as a server may.
    const h2c = await raw(r.port, 'GET /h2c HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings, close\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n');
    assert.match(h2c, /^HTTP\/1.1 200 OK\r\n[\s\S]*app$/);
    assert.equal(seen.length, 2);
    // Neither reached the app with its hop-by-hop fields.
    for (const h of seen) assert.deepEqual([h.upgrade, h['http2-settings']], [undefined, undefined]);
  });

  it('answers 408 to a request body that stalls or trickles, cancelling the app\'s request, but not to a slow steady one or one the app reads slowly', async () => {
    const outcomes: string[] = [];
    r = await rig(
      (req, res) => {
        const chunks: Buffer[] = [];
        const begin = (): void => {
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            outcomes.push(`${req.url} ${Buffer.concat(chunks).length}`);
            res.end('done');
          });
        };
        req.on('aborted', () => outcomes.push(`${req.url} aborted`));
        // /slow-reader leaves the body unread for 3 body timeouts: the proxy holds the client back meanwhile.
        if (req.url === '/slow-reader') setTimeout(begin, 900);
        else begin();
      },
      { bodyIdleTimeoutMs: 300 },
    );
    const stalled = await raw(r.port, 'POST /stalled HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc', 3000);
    assert.match(stalled, /^HTTP\/1.1 408 Request Timeout\r\n/);
    await waitUntil(() => outcomes.includes('/stalled aborted'));

    // Ten pieces of 1 KiB, one every 100 ms: never 300 ms without MIN_BODY_PROGRESS.
    const s = connect(r.port, '127.0.0.1');
    let steady = '';
    s.setEncoding('latin1').on('data', (d: string) => (steady += d));
    s.write(`POST /steady HTTP/1.1\r\nhost: a\r\ncontent-length: ${10 * MIN_BODY_PROGRESS}\r\nconnection: close\r\n\r\n`);
    for (let i = 0; i < 10; i++) {
      await new Promise((res) => setTimeout(res, 100));
      s.write('x'.repeat(MIN_BODY_PROGRESS));
    }
    await once(s, 'close');
    assert.match(steady, /^HTTP\/1.1 200 OK\r\n[\s\S]*done$/);

    // A byte every 100 ms: never 300 ms without a byte, but far less than MIN_BODY_PROGRESS in 300 ms.
    const t = connect(r.port, '127.0.0.1');
    let trickled = '';
    t.setEncoding('latin1').on('data', (d: string) => (trickled += d));
    t.on('error', () => undefined);
    t.write('POST /trickle HTTP/1.1\r\nhost: a\r\ncontent-length: 20\r\n\r\n');
    const began = performance.now();
    for (let i = 0; i < 20 && !t.closed && trickled === ''; i++) {
      await new Promise((res) => setTimeout(res, 100));
      t.write('x');
    }
    await waitUntil(() => trickled !== '', 3000);
    const after = performance.now() - began;
    t.destroy();
    assert.match(trickled, /^HTTP\/1.1 408 Request Timeout\r\n[\s\S]*stalled or trickling/);
    assert.ok(after < 1000, `refused after ${after.toFixed(0)} ms, about the 300 ms body timeout (the whole body would take 2 s)`);
    await waitUntil(() => outcomes.includes('/trickle aborted'));

    const big = randomBytes(8 * 1024 * 1024);
    const res = await call(r.port, { method: 'POST', path: '/slow-reader', body: big });
    assert.equal(res.status, 200);
    assert.deepEqual(outcomes, ['/stalled aborted', `/steady ${10 * MIN_BODY_PROGRESS}`, '/trickle aborted', `/slow-reader ${big.length}`]);
  });

  it('closes a kept-alive connection idle for the keep-alive timeout, and a silent new one at the headers timeout, without an answer', async () => {
    r = await rig((_req, res) => res.end('ok'), { headersTimeoutMs: 200, keepAliveTimeoutMs: 700 });
    const idle = connect(r.port, '127.0.0.1');
    let got = '';
    idle.setEncoding('latin1').on('data', (d: string) => (got += d));
    idle.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    const started = performance.now();
    await once(idle, 'close');
    const idleMs = performance.now() - started;
    assert.match(got, /^HTTP\/1.1 200 OK\r\n[\s\S]*ok$/);
    assert.ok(idleMs >= 650, `closed after ${idleMs.toFixed(0)} ms idle, expected the 700 ms keep-alive timeout (not the 200 ms headers timeout)`);
    const silent = connect(r.port, '127.0.0.1');
    let said = '';
    silent.setEncoding('latin1').on('data', (d: string) => (said += d));
    const opened = performance.now();
    await once(silent, 'close');
    const silentMs = performance.now() - opened;
    assert.equal(said, '', 'a connection that sent nothing gets no answer');
    assert.ok(silentMs >= 150 && silentMs < 650, `closed after ${silentMs.toFixed(0)} ms, expected the 200 ms headers timeout`);
  });

  it('closes an HTTP/1.0 connection after its response, which ends with the connection', async () => {
    r = await rig((_req, res) => {
      res.write('streamed ');
      res.end('answer');
    });
    const out = await raw(r.port, 'GET / HTTP/1.0\r\nhost: a\r\n\r\n');
    assert.match(out, /^HTTP\/1.1 200 OK\r\n/);
    assert.match(out, /connection: close\r\n/);
    assert.doesNotMatch(out, /transfer-encoding/);
    assert.ok(out.endsWith('\r\n\r\nstreamed answer'), JSON.stringify(out));
  });

  it('aborts the app\'s request when the client resets mid-body, and keeps serving', async () => {
    let aborted: () => void;
    const appSawAbort = new Promise<void>((res) => (aborted = res));
    r = await rig((req, res) => {
      if (req.url === '/upload') {
        req.on('data', () => undefined);
        req.on('error', () => aborted());
        req.on('aborted', () => aborted());
        res.on('close', () => aborted());
      } else res.end('still here');
    });
    const s = connect(r.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write('POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 1000000\r\n\r\n' + 'x'.repeat(10_000));
    await new Promise((res) => setTimeout(res, 100));
    s.resetAndDestroy();
    await appSawAbort;
    assert.match(await raw(r.port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n'), /still here$/);
  });

  it('cuts the client\'s response when the app dies mid-body (no false end), and keeps serving', async () => {
    r = await rig((req, res) => {
      if (req.url === '/die') {
        res.writeHead(200, { 'content-length': '100000' });
        res.write('x'.repeat(1000), () => setTimeout(() => res.socket?.destroy(), 20));
      } else res.end('fine');
    });
    const out = await raw(r.port, 'GET /die HTTP/1.1\r\nhost: a\r\n\r\n');
    assert.match(out, /^HTTP\/1.1 200 OK\r\n/);
    assert.ok(out.length < 100_000, 'the client saw the connection close before the promised length');
    assert.match(await raw(r.port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n'), /fine$/);
  });

  it('never hands bytes the app sent unasked to a later request: a connection out of step is closed, not reused', async () => {
    // A raw app: its first connection sends bytes after its response in the same write, its
    // second sends a response nobody asked for while idle; the third behaves.
    const names = ['one', 'two', 'three', 'four'];
    const closed: boolean[] = [];
    let n = 0;
    const app = createServer((s) => {
      const i = n++;
      closed[i] = false;
      s.on('error', () => undefined);
      s.once('close', () => (closed[i] = true));
      let buf = '';
      s.setEncoding('latin1').on('data', (d: string) => {
        buf += d;
        if (!buf.includes('\r\n\r\n')) return;
        buf = '';
        const body = names[i]!;
        const stale = 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale';
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}${i === 0 ? stale : ''}`);
        if (i === 1) setTimeout(() => s.write(stale), 50);
      });
    });
    const rig = await proxyFor(app);
    const port = rig.port;
    try {
      const bodies: string[] = [];
      for (let i = 0; i < 3; i++) {
        bodies.push((await call(port, { path: `/${i}` })).body.toString());
        // The second connection's unasked response comes while it is idle in the pool.
        if (i === 1) await new Promise((resolve) => setTimeout(resolve, 150));
      }
      assert.deepEqual(bodies, ['one', 'two', 'three']);
      assert.equal(n, 3, 'each connection out of step was replaced by a new one');
      await waitUntil(() => closed[0] === true && closed[1] === true);
      assert.equal(closed[2], false, 'the connection in step stays pooled');
    } finally {
      await rig.close();
    }
  });

  it('serves a stream that is not a socket (read as a stream, not into its buffer): pipelined requests with bodies, in order', async () => {
    r = await rig((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`${req.url} got ${Buffer.concat(chunks).toString()}`));
    });
    // Two JS streams wired to each other: what one writes, the other reads.
    const client = new Duplex({ read: () => undefined, write: (c: Buffer, _e, cb) => (server.push(c), cb()), final: (cb) => (server.push(null), cb()) });
    const server = new Duplex({ read: () => undefined, write: (c: Buffer, _e, cb) => (client.push(c), cb()), final: (cb) => (client.push(null), cb()) });
    r.proxy.accept(server);
    let out = '';
    client.setEncoding('latin1').on('data', (d: string) => (out += d));
    client.write('POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\none' + 'POST /b HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n');
    await once(client, 'end');
    assert.match(out, /^HTTP\/1.1 200 OK\r\n[\s\S]*\/a got one[\s\S]*HTTP\/1.1 200 OK\r\n[\s\S]*\/b got two/);
  });

  it('answers 502 to a malformed response from the app', async () => {
    const bad = createServer((s) => s.end('HTTP/1.1 abc nonsense\r\n\r\n'));
    const rig = await proxyFor(bad);
    try {
      const out = await raw(rig.port, 'GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
      assert.match(out, /^HTTP\/1.1 502 Bad Gateway\r\n[\s\S]*bad status line/);
    } finally {
      await rig.close();
    }
  });
});
