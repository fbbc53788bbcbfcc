// The proxy-wide memory bound of tsmesh/mux (MuxBudget) over real TLS
// connections on loopback: hundreds of streams whose readers are paused, from
// a well-behaved sender and from a peer that writes frames of its own.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { createProxyMetrics } from '../metrics.js';
import { issueCredentials } from '../testdata/mesh.js';
import { HELD_PAYLOAD_OVERHEAD, MuxBudget, MuxSession, proxyMuxBudget, STREAM_WINDOW, StreamResetError, type MuxStream } from './mux.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Beyond the limit, a session may hold what its one read in progress brought: a read (64 kB) and a frame cut across reads, with their overhead. */
const ONE_READ = 2 * (64 * 1024 + HELD_PAYLOAD_OVERHEAD * 2);

/** Bytes the streams hold for their paused readers, as the streams themselves keep them. */
function heldByStreams(streams: MuxStream[]): number {
  let n = 0;
  for (const s of streams) for (const b of (s as unknown as { received: Buffer[] }).received) n += b.length;
  return n;
}

interface Side {
  session: MuxSession;
  socket: TLSSocket;
}

describe('tsmesh/mux memory bound (the proxy-wide budget)', function () {
  this.timeout(60_000);
  let server: Server;
  const sockets: TLSSocket[] = [];
  let key: string;
  let cert: string;

  before(async () => {
    const { ca } = await newRootCa();
    const c = issueCredentials(ca, 'spiffe://cluster.local/ns/shop/sa/api');
    key = c.keyPem;
    cert = c.certChainPem;
  });

  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
    server?.close();
  });

  /** A TLS listener whose connections become server sessions charging `budget`; each accepted stream is paused, as an app that does not read would leave it. */
  async function serve(budget: MuxBudget, accepted: MuxStream[]): Promise<{ port: number; sessions: Side[] }> {
    const sessions: Side[] = [];
    server = createServer({ key, cert }, (socket) => {
      sockets.push(socket);
      const session = new MuxSession(socket, {
        budget,
        onStream: (s) => {
          s.pause();
          accepted.push(s);
        },
      });
      sessions.push({ session, socket });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { port: (server.address() as AddressInfo).port, sessions };
  }

  async function dial(port: number): Promise<TLSSocket> {
    const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    sockets.push(socket);
    await once(socket, 'secureConnect');
    return socket;
  }

  /** Reads every accepted stream to its end; resolves with the bytes each got, by id. */
  function readAll(accepted: MuxStream[]): Promise<Map<number, number>> {
    const got = new Map<number, number>();
    return Promise.all(
      accepted.map(
        (s) =>
          new Promise<void>((resolve) => {
            got.set(s.id, 0);
            s.on('data', (d: Buffer) => got.set(s.id, got.get(s.id)! + d.length));
            s.once('end', () => {
              s.end();
              resolve();
            });
            s.resume();
          }),
      ),
    ).then(() => got);
  }

  it('holds at most its budget for hundreds of paused streams of one peer, holds the sender back, and everything arrives once the readers read', async () => {
    const budget = new MuxBudget(8 * MiB);
    const accepted: MuxStream[] = [];
    const { port, sessions } = await serve(budget, accepted);
    const clientSocket = await dial(port);
    const client = new MuxSession(clientSocket, { budget: new MuxBudget() });
    const STREAMS = 300;
    const BODY = 512 * 1024;
    const body = Buffer.alloc(BODY, 'b');
    const streams = Array.from({ length: STREAMS }, () => client.open());
    for (const s of streams) s.write('h');
    await until(() => accepted.length === STREAMS, `${STREAMS} streams at the server`);
    gc();
    const before = process.memoryUsage();

    // Every stream sends its body at once, as far as the window and the connection let it.
    for (const s of streams) s.end(body);
    let most = 0;
    let mostByStreams = 0;
    let clientBacklog = 0;
    const watch = setInterval(() => {
      most = Math.max(most, budget.buffered);
      mostByStreams = Math.max(mostByStreams, heldByStreams(accepted));
      clientBacklog = Math.max(clientBacklog, clientSocket.writableLength);
    }, 1);
    try {
      await until(() => budget.spent || heldByStreams(accepted) > budget.limit + ONE_READ, 'the budget to be spent');
      await sleep(500);
    } finally {
      clearInterval(watch);
    }
    gc();
    const stalled = process.memoryUsage();
    const grown = (stalled.arrayBuffers - before.arrayBuffers) / MiB;
    console.log(
      `      ${STREAMS} streams x ${BODY / 1024} KiB, paused readers: held ${(Math.max(most, mostByStreams) / MiB).toFixed(2)} MiB at most (budget ${budget.limit / MiB} MiB; ` +
        `the windows allow ${((STREAMS * STREAM_WINDOW) / MiB).toFixed(0)} MiB), sender's socket backlog ${(clientBacklog / MiB).toFixed(2)} MiB at most, ` +
        `buffers grew ${grown.toFixed(1)} MiB, heap ${((stalled.heapUsed - before.heapUsed) / MiB).toFixed(1)} MiB`,
    );
    assert.ok(mostByStreams <= budget.limit + ONE_READ, `the streams held ${mostByStreams} bytes for paused readers (budget ${budget.limit})`);
    assert.ok(most <= budget.limit + ONE_READ, `the budget counted ${most} bytes`);
    assert.equal(budget.buffered, heldByStreams(accepted) + HELD_PAYLOAD_OVERHEAD * accepted.reduce((n, s) => n + (s as unknown as { received: Buffer[] }).received.length, 0));
    // The sender holds the rest back: its writers were told to wait, not its socket filled.
    assert.ok(clientBacklog <= 2 * MiB, `the sender's socket held ${clientBacklog} bytes`);
    // Both ends live in this process: what it holds is the budget, the sender's backlog and the sockets' buffers, not the windows' 75 MiB.
    // Those buffers come to about 11 MiB on an idle machine and have reached 30 MiB on a loaded one (reads and TLS records still in
    // flight when the collector runs), so the bound is half of what the windows allow: well below it, and clear of that noise.
    const windows = (STREAMS * STREAM_WINDOW) / MiB;
    assert.ok(grown < windows / 2, `buffers grew ${grown.toFixed(1)} MiB (the windows allow ${windows.toFixed(0)} MiB)`);
    assert.equal(budget.refusedStreams, 0);

    // The readers read: the streams the budget held back go on as memory frees, and every body arrives whole.
    const got = await readAll(accepted);
    for (const s of accepted) assert.equal(got.get(s.id), 1 + BODY, `stream ${s.id}`);
    await until(() => client.size === 0 && sessions[0]!.session.size === 0, 'every stream to close');
    assert.equal(budget.buffered, 0);
  });

  it('holds at most its budget against a peer that opens hundreds of streams and fills every window at once', async () => {
    const budget = new MuxBudget(8 * MiB);
    const accepted: MuxStream[] = [];
    const { port, sessions } = await serve(budget, accepted);
    const socket = await dial(port);
    // The peer's own frames: a full window of DATA on each new stream, written without waiting for anything.
    const FRAME = 64 * 1024;
    const perStream = Buffer.alloc((STREAM_WINDOW / FRAME) * (8 + FRAME), 'p');
    const STREAMS = 300;
    let written = 0;
    let closed = false;
    socket.once('close', () => (closed = true));
    const blast = (async () => {
      for (let i = 0; i < STREAMS && !closed; i++) {
        const frames = Buffer.from(perStream);
        for (let at = 0; at < frames.length; at += 8 + FRAME) {
          frames.writeUInt32BE(2 * i + 1, at);
          frames.writeUInt32BE(FRAME, at + 4);
        }
        written++;
        if (!socket.write(frames)) await once(socket, 'drain');
      }
    })();
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, budget.buffered)), 1);
    try {
      await until(() => budget.spent || heldByStreams(accepted) > budget.limit + ONE_READ, 'the budget to be spent');
      await sleep(500);
    } finally {
      clearInterval(watch);
    }
    console.log(`      the peer wrote ${written} of ${STREAMS} full windows; held ${(Math.max(most, heldByStreams(accepted)) / MiB).toFixed(2)} MiB at most (budget ${budget.limit / MiB} MiB), ${accepted.length} streams taken, ${budget.refusedStreams} refused`);
    assert.ok(heldByStreams(accepted) <= budget.limit + ONE_READ, `the streams held ${heldByStreams(accepted)} bytes for paused readers (budget ${budget.limit})`);
    assert.ok(most <= budget.limit + ONE_READ, `the budget counted ${most} bytes`);
    assert.ok(accepted.length < STREAMS, 'every stream was taken');
    // A session that does not read its socket does not see the peer leave either: the server ends it here.
    socket.destroy();
    void blast.catch(() => undefined);
    sessions[0]!.socket.destroy();
    await until(() => budget.buffered === 0, 'the closed connection to give its bytes back');
  });

  it('counts a peer\'s one-byte frames at what they cost, not only their bytes', async () => {
    const budget = new MuxBudget(1 * MiB);
    const accepted: MuxStream[] = [];
    const { port } = await serve(budget, accepted);
    const socket = await dial(port);
    // 60,000 one-byte DATA frames on one stream: 60 kB, well within its window, in 60,000 Buffers.
    const frames = Buffer.alloc(60_000 * 9);
    for (let at = 0; at < frames.length; at += 9) {
      frames.writeUInt32BE(1, at);
      frames.writeUInt32BE(1, at + 4);
    }
    socket.write(frames);
    await until(() => budget.spent, 'the budget to be spent');
    await sleep(200);
    const held = heldByStreams(accepted);
    assert.ok(held < 60_000, `all ${held} bytes were taken in`);
    assert.ok(budget.buffered <= budget.limit + 64 * 1024 * (1 + HELD_PAYLOAD_OVERHEAD / 9), `the budget counted ${budget.buffered}`);
  });

  it('refuses new streams while the budget is spent, counted, and takes them again once it has room', async () => {
    const budget = new MuxBudget(1 * MiB);
    const accepted: MuxStream[] = [];
    const { port } = await serve(budget, accepted);
    const filler = new MuxSession(await dial(port), { budget: new MuxBudget() });
    const filling = Array.from({ length: 8 }, () => filler.open());
    for (const s of filling) s.end(Buffer.alloc(STREAM_WINDOW, 'f'));
    await until(() => budget.spent, 'the budget to be spent');
    // Another peer's connection, read on: its new stream is refused unread, as safe to send again.
    const other = new MuxSession(await dial(port), { budget: new MuxBudget() });
    const late = other.open();
    const refusal = once(late, 'error') as Promise<[StreamResetError]>;
    late.write('late');
    const [e] = await refusal;
    assert.ok(e instanceof StreamResetError);
    assert.equal(e.refused, true);
    assert.equal(budget.refusedStreams, 1);
    // The readers read; the streams the stalled connection had not delivered yet come as memory frees, and are read too.
    const got = new Map<number, number>();
    const reading = new Set<MuxStream>();
    await until(() => {
      for (const s of accepted.filter((a) => !reading.has(a))) {
        reading.add(s);
        void readAll([s]).then((m) => m.forEach((n, id) => got.set(id, n)));
      }
      return got.size === filling.length;
    }, 'every filling stream read to its end');
    for (const n of got.values()) assert.equal(n, STREAM_WINDOW);
    assert.equal(budget.buffered, 0);
    other.open().end('again');
    await until(() => accepted.length === filling.length + 1, 'the new stream at the server');
  });

  it('shows the process budget in the proxy\'s metrics: bytes held for paused readers', async () => {
    const metrics = createProxyMetrics();
    const accepted: MuxStream[] = [];
    const { port } = await serve(proxyMuxBudget, accepted);
    const client = new MuxSession(await dial(port), { budget: new MuxBudget() });
    client.open().end(Buffer.alloc(100_000, 'm'));
    await until(() => proxyMuxBudget.buffered >= 100_000, 'the bytes held');
    const text = await metrics.registry.metrics();
    assert.match(text, new RegExp(`^tsmesh_mux_buffered_bytes ${proxyMuxBudget.buffered}$`, 'm'));
    assert.match(text, /^tsmesh_mux_streams_refused_total \d+$/m);
    await readAll(accepted);
  });
});
