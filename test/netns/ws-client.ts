// The `ws` package's client, run as the app of pod "a" in
// test/netns/upgrade.test.ts; prints one JSON line with what it saw.
//   echo URL     1,000 text messages echoed one after the other, a 1 MiB
//                binary frame, ping/pong, then the server's close code (it
//                closes on "close-me"); a second connection closes with the
//                client's code 4001
//   denied URL   expects the upgrade refused: the status and x-tsmesh-error
//   hold URL MS  keeps a WebSocket open MS ms, then checks it still echoes
//   bench URL N  N WebSockets opened one after the other (time to open each),
//                then on one of them, uncompressed: round trips of 32-byte
//                messages, and 64 MiB echoed in 256 KiB frames while plain
//                GETs to the same host and port are timed one after another
//                (and before, with nothing else going on)
//   stall URL N  opens N WebSockets, has the app send 1 MiB on each and
//                reads none of it (a slow reader's WebSocket), then times
//                plain GETs to the same host and port
// Usage: node --import tsx test/netns/ws-client.ts MODE URL [ARG]
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { WebSocket } from 'ws';

const [mode, url = '', arg] = process.argv.slice(2);

async function open(compress = true): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: compress });
  ws.on('error', () => undefined);
  await once(ws, 'open');
  return ws;
}

function echoes(ws: WebSocket, n: number, make: (i: number) => string | Buffer): Promise<(string | Buffer)[]> {
  return new Promise((resolve) => {
    const got: (string | Buffer)[] = [];
    const onMessage = (m: Buffer, binary: boolean): void => {
      got.push(binary ? m : m.toString());
      if (got.length === n) {
        ws.off('message', onMessage);
        resolve(got);
      } else ws.send(make(got.length));
    };
    ws.on('message', onMessage);
    ws.send(make(0));
  });
}

const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function echo(): Promise<object> {
  const ws = await open();
  const texts = await echoes(ws, 1000, (i) => `message ${i}`);
  const inOrder = texts.every((m, i) => m === `message ${i}`);
  const blob = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 13) & 0xff));
  ws.send(blob);
  const [back, binary] = (await once(ws, 'message')) as [Buffer, boolean];
  ws.ping('ping from the client');
  const [pong] = (await once(ws, 'pong')) as [Buffer];
  ws.send('close-me');
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  const second = await open();
  second.close(4001, 'client says bye');
  const [clientCode] = (await once(second, 'close')) as [number];
  return {
    echoed: texts.length,
    inOrder,
    binary: binary && back.equals(blob),
    extensions: ws.extensions,
    pong: pong.toString(),
    serverClose: [code, reason.toString()],
    clientClose: clientCode,
  };
}

async function denied(): Promise<object> {
  const ws = new WebSocket(url);
  ws.on('error', () => undefined);
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number; headers: Record<string, string> }];
  ws.terminate();
  return { status: res.statusCode, error: res.headers['x-tsmesh-error'] };
}

async function hold(): Promise<object> {
  const ws = await open();
  await new Promise((r) => setTimeout(r, Number(arg)));
  ws.send('still there');
  const [m] = (await once(ws, 'message')) as [Buffer];
  ws.close();
  return { echoed: m.toString() };
}

/** Times plain GETs to the WebSocket's host and port, one after another, until `until` resolves (or `n` are done). */
async function timeGets(until: Promise<unknown> | undefined, n = Infinity): Promise<number[]> {
  const target = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  let over = false;
  void until?.then(() => (over = true));
  while (!over && times.length < n) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      request({ host: target.hostname, port: target.port, path: '/plain', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
        .on('error', reject)
        .end();
    });
    times.push(performance.now() - t);
  }
  agent.destroy();
  return times;
}

async function stall(): Promise<object> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < Number(arg ?? 100); i++) {
    const ws = await open(false);
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    ws.send('flood');
    sockets.push(ws);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const gets = await Promise.race([timeGets(undefined, 50), new Promise<number[]>((r) => setTimeout(() => r([]), 20_000))]);
  for (const s of sockets) s.terminate();
  const round = (x: number): number => Math.round(x * 100) / 100;
  return { gets: gets.length, getMs: gets.length ? { p50: round(percentile(gets, 0.5)), p99: round(percentile(gets, 0.99)) } : 'none within 20 s' };
}

async function bench(): Promise<object> {
  const opens: number[] = [];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < Number(arg ?? 50); i++) {
    const t = performance.now();
    sockets.push(await open(false));
    opens.push(performance.now() - t);
  }
  const quietGets = await timeGets(undefined, 500);
  const ws = sockets[0]!;
  const rtts: number[] = [];
  const small = Buffer.alloc(32, 1);
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    ws.send(small);
    await once(ws, 'message');
    rtts.push(performance.now() - t);
  }
  const frame = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 131) & 0xff));
  const total = 64 * 1024 * 1024;
  const t = performance.now();
  let got = 0;
  const bulk = new Promise<void>((resolve) => {
    ws.on('message', (m: Buffer) => {
      got += m.length;
      if (got >= total) resolve();
    });
    let sent = 0;
    const pump = (): void => {
      while (sent < total && ws.bufferedAmount < 4 * frame.length) {
        ws.send(frame);
        sent += frame.length;
      }
      if (sent < total) setTimeout(pump, 1);
    };
    pump();
  });
  const busyGets = await timeGets(bulk);
  await bulk;
  const bulkMs = performance.now() - t;
  for (const s of sockets) s.terminate();
  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    openMs: { p50: round(percentile(opens, 0.5)), p90: round(percentile(opens, 0.9)) },
    rttMs: { p50: round(percentile(rtts, 0.5)), p99: round(percentile(rtts, 0.99)) },
    bulkMiBps: round(total / 1048576 / (bulkMs / 1000)),
    getMs: { quiet: { p50: round(percentile(quietGets, 0.5)), p99: round(percentile(quietGets, 0.99)) }, duringBulk: { n: busyGets.length, p50: round(percentile(busyGets, 0.5)), p99: round(percentile(busyGets, 0.99)) } },
  };
}

const modes: Record<string, () => Promise<object>> = { echo, denied, hold, bench, stall };
const run = modes[mode ?? ''];
if (!run) {
  process.stderr.write(`usage: ws-client.ts echo|denied|hold|bench URL [ARG]\n`);
  process.exit(2);
}
try {
  process.stdout.write(JSON.stringify(await run()) + '\n');
  process.exit(0);
} catch (e) {
  process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
  process.exit(1);
}
