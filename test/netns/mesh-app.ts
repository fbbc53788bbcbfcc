// The app of pod "b" in the mesh tests (test/netns/mesh.test.ts): on one
// port, HTTP/1.1 and HTTP/2 with prior knowledge (h2c), told apart by the
// client's first bytes as a Go h2c handler would; on another, a TCP echo.
// Every request is logged to stdout as one JSON line, so the test knows what
// reached the app and what did not. Answers JSON: the protocol, the path, the
// peer address the app saw (the proxy's, over loopback).
//   GET /slow?ms=N   answers after N ms (for requests in flight at SIGTERM).
//   ?failPercent=P&failStatus=S   answers S (default 503) to P% of requests, at random.
// A JSON line on stdin changes how every request is answered from then on:
//   {"fail": {"status": 500}}   answer every request with that status
//   {"fail": null}              answer normally again
//   {"hang": true}              answer nothing: every request is held (a hung app)
//   {"hang": false}             answer again; held requests whose client is still there are answered
//   {"reset": true|false}       close every request's connection without an answer
//   {"delayMs": N}              answer every request N ms late (0: at once)
//   {"stats": true}             only report: open connections and held requests
// and is acknowledged with {"event":"control",...,"connections":N,"held":M}. The app is named by its
// third argument (default "b"); logged requests carry the traceparent,
// x-tsmesh-client-id and x-forwarded-client-cert headers they came with and
// the status they were answered.
// Usage: node --import tsx test/netns/mesh-app.ts HTTP_PORT ECHO_PORT [NAME]
// Prints {"ready":true} once both ports listen.
import { once } from 'node:events';
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const [httpPort = '8080', echoPort = '9000', name = 'b'] = process.argv.slice(2);
/** Set from stdin: every request is answered with this status. */
let failAll: number | undefined;
/** Set from stdin: requests are held unanswered (hang), or their connection closed (reset), or answered late. */
let hang = false;
let reset = false;
let delayMs = 0;
/** Requests held while hanging (by their path), answered (if their client is still there) when it ends. */
const held = new Map<() => void, string | undefined>();
/** Connections open to the HTTP port now. */
let connections = 0;

function log(entry: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ at: Date.now(), ...entry }) + '\n');
}

function handle(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://app');
  const failPercent = Number(url.searchParams.get('failPercent') ?? 0);
  const status = failAll ?? (failPercent > 0 && Math.random() * 100 < failPercent ? Number(url.searchParams.get('failStatus') ?? 503) : 200);
  const traceparent = req.headers.traceparent;
  // The caller's identity as the inbound proxy gives it (absent for a plain caller).
  const clientId = req.headers['x-tsmesh-client-id'];
  const clientCert = req.headers['x-forwarded-client-cert'];
  const entry = {
    event: 'request',
    protocol: req.httpVersion,
    method: req.method,
    path: req.url,
    peer: req.socket.remoteAddress,
    ...(status === 200 ? {} : { status }),
    ...(traceparent === undefined ? {} : { traceparent }),
    ...(clientId === undefined ? {} : { clientId }),
    ...(clientCert === undefined ? {} : { clientCert }),
  };
  log(entry);
  const answer = (): void => {
    const body = JSON.stringify({ app: name, ...entry });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    log({ event: 'response', path: req.url });
  };
  if (reset) {
    req.socket.destroy();
    return;
  }
  if (hang) {
    // The response's 'close' comes when its connection (HTTP/1.1) or its stream (HTTP/2) goes away unanswered.
    let gone = false;
    const release = (): void => {
      held.delete(release);
      if (!gone) answer();
    };
    held.set(release, req.url);
    res.once('close', () => {
      gone = true;
      held.delete(release);
    });
    return;
  }
  const ms = Number(url.searchParams.get('ms') ?? 0) + delayMs;
  if ((url.pathname === '/slow' || delayMs > 0) && ms > 0) setTimeout(answer, Math.min(ms, 30_000));
  else answer();
}

const http1 = createHttp1Server({ keepAliveTimeout: 60_000 }, handle);
const http2 = createHttp2Server({}, handle);
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

// Reads until the first bytes tell HTTP/2's preface from anything else, puts
// them back, and hands the socket to the matching server.
const web = createTcpServer({ noDelay: true }, (socket: Socket) => {
  connections++;
  socket.once('close', () => connections--);
  socket.on('error', () => socket.destroy());
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, PREFACE.length);
    const maybeH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (maybeH2 && head.length < PREFACE.length) return;
    socket.off('data', onData);
    socket.pause();
    socket.unshift(head);
    // Handed over after this 'data' event returns: an HTTP/2 session set up
    // inside it loses the bytes just put back.
    queueMicrotask(() => {
      (maybeH2 ? http2 : http1).emit('connection', socket);
      socket.resume();
    });
  };
  socket.on('data', onData);
});

const echo = createTcpServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  log({ event: 'echo', peer: socket.remoteAddress });
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});

web.listen(Number(httpPort), '0.0.0.0');
echo.listen(Number(echoPort), '0.0.0.0');
await Promise.all([once(web, 'listening'), once(echo, 'listening')]);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return;
  try {
    const command = JSON.parse(line) as { fail?: { status: number } | null; hang?: boolean; reset?: boolean; delayMs?: number; stats?: boolean };
    if ('fail' in command) failAll = command.fail?.status;
    if (command.reset !== undefined) reset = command.reset;
    if (command.delayMs !== undefined) delayMs = command.delayMs;
    if (command.hang !== undefined) {
      hang = command.hang;
      if (!hang) for (const release of [...held.keys()]) release();
    }
    log({ event: 'control', ...command, connections, held: held.size, heldPaths: [...held.values()].slice(0, 5) });
  } catch (e) {
    log({ event: 'control', error: (e as Error).message });
  }
});
log({ ready: true });
process.on('SIGTERM', () => process.exit(0));
