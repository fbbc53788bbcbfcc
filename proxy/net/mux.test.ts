// tsmesh/mux over a real TCP connection on loopback (the sidecars run it over
// mTLS; the framing does not care which).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { MAX_STREAMS, MuxSession, StreamResetError, STREAM_WINDOW, type MuxStream } from './mux.js';

interface Pair {
  client: MuxSession;
  clientSocket: Socket;
  server: MuxSession;
  serverSocket: Socket;
  /** Streams the server was handed, in order. */
  accepted: MuxStream[];
  errors: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function collect(stream: MuxStream): { text: () => string; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  return { text: () => Buffer.concat(chunks).toString('latin1'), ended: once(stream, 'end').then(() => undefined) };
}

describe('tsmesh/mux', function () {
  this.timeout(20_000);
  let listener: Server;
  const pairs: Pair[] = [];

  before(async () => {
    listener = createServer({ allowHalfOpen: true });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
  });

  after(() => listener.close());

  afterEach(() => {
    for (const p of pairs.splice(0)) {
      p.clientSocket.destroy();
      p.serverSocket.destroy();
    }
  });

  async function pair(onStream?: (s: MuxStream) => void, idleMs?: number): Promise<Pair> {
    const accepted: MuxStream[] = [];
    const errors: string[] = [];
    const serverSide = once(listener, 'connection') as Promise<[Socket]>;
    const clientSocket = connect((listener.address() as AddressInfo).port, '127.0.0.1');
    await once(clientSocket, 'connect');
    const [serverSocket] = await serverSide;
    const server = new MuxSession(serverSocket, {
      onStream: (s) => {
        accepted.push(s);
        onStream?.(s);
      },
      onError: (m) => errors.push(m),
      ...(idleMs === undefined ? {} : { idleMs }),
    });
    const client = new MuxSession(clientSocket);
    const p = { client, clientSocket, server, serverSocket, accepted, errors };
    pairs.push(p);
    return p;
  }

  it('carries many streams at once, each one\'s bytes in order, both ways', async () => {
    const p = await pair((s) => {
      // An echo with a prefix, per stream.
      s.on('data', (d: Buffer) => s.write(Buffer.concat([Buffer.from(`${s.id}:`), d])));
      s.on('end', () => s.end());
    });
    const streams = Array.from({ length: 50 }, () => p.client.open());
    const got = streams.map((s) => collect(s));
    for (const [i, s] of streams.entries()) s.write(`hello ${i}`);
    for (const [i, s] of streams.entries()) s.end(` bye ${i}`);
    await Promise.all(got.map((g) => g.ended));
    for (const [i, s] of streams.entries()) assert.equal(got[i]!.text(), `${s.id}:hello ${i}${s.id}: bye ${i}`);
    assert.equal(p.accepted.length, 50);
    await until(() => p.client.size === 0 && p.server.size === 0, 'every stream to close on both sides');
  });

  it('writes the frames of one turn of the event loop in one socket write', async () => {
    const p = await pair((s) => s.on('data', () => undefined));
    let writes = 0;
    const write = p.clientSocket.write.bind(p.clientSocket) as (...a: unknown[]) => boolean;
    p.clientSocket.write = ((...a: unknown[]) => {
      writes++;
      return write(...a);
    }) as typeof p.clientSocket.write;
    for (let i = 0; i < 20; i++) p.client.open().write(`request ${i}`);
    await until(() => p.accepted.length === 20, '20 streams at the server');
    assert.equal(writes, 1);
  });

  it('stops a sender at the window while its reader is paused, and the other streams keep flowing', async () => {
    const got = new Map<number, ReturnType<typeof collect>>();
    const p = await pair((s) => got.set(s.id, collect(s)));
    const slow = p.client.open();
    const fast = p.client.open();
    const total = 4 * STREAM_WINDOW;
    slow.write('x'); // opens it at the server
    await until(() => p.accepted.length === 1, 'the slow stream at the server');
    const slowAtServer = p.accepted[0]!;
    slowAtServer.pause();
    let accepted = true;
    let sent = 1;
    while (accepted && sent < total) {
      accepted = slow.write(Buffer.alloc(16 * 1024, 'y'));
      sent += 16 * 1024;
    }
    assert.equal(accepted, false, 'write() never said to wait');
    // The other stream is not held up by the blocked one.
    fast.write('fast');
    await until(() => p.accepted.length === 2, 'the fast stream at the server');
    await until(() => got.get(fast.id)?.text() === 'fast', 'the fast stream\'s bytes');
    await sleep(50);
    assert.equal(got.get(slow.id)!.text(), 'x', 'a paused reader was handed data');
    // Nothing more than the window is held for the paused reader; the rest waits at the sender.
    const held = (slowAtServer as unknown as { received: Buffer[] }).received.reduce((n, b) => n + b.length, 0);
    assert.ok(held <= STREAM_WINDOW, `${held} bytes held for a paused reader`);
    const drained = once(slow, 'drain');
    slowAtServer.resume();
    await drained;
    slow.end();
    await got.get(slow.id)!.ended;
    const all = got.get(slow.id)!.text();
    assert.equal(all.length, sent);
    assert.equal(all, `x${'y'.repeat(sent - 1)}`);
  });

  it('passes a half-close one way while the other way goes on', async () => {
    let asked: ReturnType<typeof collect> | undefined;
    const p = await pair((st) => (asked = collect(st)));
    const s = p.client.open();
    s.write('question');
    await until(() => p.accepted.length === 1, 'the stream at the server');
    const atServer = p.accepted[0]!;
    s.end();
    await asked!.ended;
    assert.equal(asked!.text(), 'question');
    const answer = collect(s);
    atServer.end('answer after the client\'s FIN');
    await answer.ended;
    assert.equal(answer.text(), 'answer after the client\'s FIN');
    await until(() => s.destroyed && atServer.destroyed, 'both ends to close');
  });

  it('resets: the other end gets an error and closes', async () => {
    const p = await pair();
    const s = p.client.open();
    s.write('doomed');
    await until(() => p.accepted.length === 1, 'the stream at the server');
    const atServer = p.accepted[0]!;
    const error = once(atServer, 'error') as Promise<[StreamResetError]>;
    // Not events.once: its 'close' promise would reject on the 'error' that comes first.
    const closed = new Promise((resolve) => atServer.once('close', resolve));
    s.destroy();
    const [e] = await error;
    assert.ok(e instanceof StreamResetError);
    assert.equal(e.refused, false);
    await closed;
    assert.equal(p.server.size, 0);
  });

  it('on GOAWAY serves the streams it has, refuses new ones as safe to retry, and ends the connection after the last', async () => {
    const p = await pair();
    const open = p.client.open();
    open.write('in flight');
    await until(() => p.accepted.length === 1, 'the first stream at the server');
    p.server.goAway();
    // Opened before the client has seen GOAWAY: the server refuses it unread.
    const late = p.client.open();
    const refusal = once(late, 'error') as Promise<[StreamResetError]>;
    late.write('too late');
    const [e] = await refusal;
    assert.equal(e.refused, true);
    assert.equal(p.accepted.length, 1);
    assert.equal(p.client.usable, false);
    assert.throws(() => p.client.open(), /going away/);
    // The stream in flight finishes; then the connection ends.
    const answer = collect(open);
    const atServer = p.accepted[0]!;
    atServer.on('data', () => undefined);
    atServer.end('done');
    open.end();
    await answer.ended;
    assert.equal(answer.text(), 'done');
    await once(p.clientSocket, 'close');
  });

  it('refuses streams beyond its limit', async () => {
    const p = await pair((s) => s.on('data', () => undefined));
    const streams = Array.from({ length: MAX_STREAMS + 1 }, () => p.client.open());
    const refused = once(streams[MAX_STREAMS]!, 'error') as Promise<[StreamResetError]>;
    for (const s of streams) s.write('x');
    const [e] = await refused;
    assert.equal(e.refused, true);
    assert.equal(p.server.size, MAX_STREAMS);
  });

  for (const [name, bytes, message] of [
    ['a frame of an unknown type', Buffer.from([0, 0, 0, 1, 9, 0, 0, 0]), /unknown type 9/],
    ['a frame longer than allowed', Buffer.from([0, 0, 0, 1, 0, 0xff, 0xff, 0xff]), /a frame of 16777215 bytes/],
    ['a stream with an even id', Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 0x41]), /even/],
    ['GOAWAY from the client', Buffer.from([0, 0, 0, 0, 4, 0, 0, 0]), /GOAWAY from the client/],
  ] as const) {
    it(`ends the connection on ${name}, with the reason, and resets its streams`, async () => {
      const p = await pair();
      const s = p.client.open();
      s.write('first');
      await until(() => p.accepted.length === 1, 'the stream at the server');
      const reset = once(p.accepted[0]!, 'error');
      const closed = once(p.serverSocket, 'close');
      p.clientSocket.write(bytes);
      await reset;
      await closed;
      assert.match(p.errors.join('\n'), message);
    });
  }

  it('ends the connection when a sender ignores the window', async () => {
    const p = await pair();
    const s = p.client.open();
    s.write('x');
    await until(() => p.accepted.length === 1, 'the stream at the server');
    p.accepted[0]!.pause();
    // Raw DATA frames past the window, as a broken peer would send them.
    const chunk = Buffer.alloc(8 + 64 * 1024);
    chunk.writeUInt32BE(s.id, 0);
    chunk.writeUInt32BE(64 * 1024, 4);
    const closed = once(p.serverSocket, 'close');
    for (let i = 0; i < STREAM_WINDOW / (64 * 1024) + 1; i++) p.clientSocket.write(chunk);
    await closed;
    assert.match(p.errors.join('\n'), /more than its window/);
  });

  it('goes away after its idle time without streams, and not while one is open', async () => {
    const { client, clientSocket, server } = await pair(undefined, 150);
    const s = client.open();
    s.write('busy');
    await sleep(400);
    assert.equal(client.usable, true, 'went away with a stream open');
    s.destroy();
    await once(clientSocket, 'close');
    assert.equal(client.usable, false);
    assert.equal(server.closed, true);
  });

  it('resets every stream when the connection goes away', async () => {
    const p = await pair();
    const s = p.client.open();
    s.write('x');
    await until(() => p.accepted.length === 1, 'the stream at the server');
    const error = once(s, 'error') as Promise<[StreamResetError]>;
    p.serverSocket.destroy();
    const [e] = await error;
    assert.match(e.message, /mux connection closed/);
    assert.equal(p.client.usable, false);
  });
});
