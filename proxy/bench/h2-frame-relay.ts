// The floor of a design the gRPC path could take, for `tsx
// proxy/bench/grpc-cpu.ts` (GRPC_CPU_FRAMES=1): node:http2 only where the
// app speaks it, and between the two proxies a framing of their own over
// one mTLS connection, as tsmesh/mux carries HTTP/1.1, instead of a second
// node:http2 hop in each proxy. A sketch to measure, not the proxy: no
// routing, no layers, no flow control, no limits, no error handling beyond
// resetting a stream.
//   node --import tsx proxy/bench/h2-frame-relay.ts SETUP.json
// SETUP.json, the client side (h2c from the app in, frames out):
//   { side: "client", listen: {port}, upstream: {port, tls: {cert, key, ca}} }
// the server side (frames in, h2c to the app):
//   { side: "server", listen: {port, tls}, upstream: {port} }
// Prints "ready PORT".
//
// Frame: stream id (u32), type (u8), payload length (u24), payload.
//   HEAD  the head as JSON ({name: value}, pseudo-headers included); flag
//         END_STREAM in the type's high bit when no body follows
//   DATA  body bytes
//   END   the body is over; payload: the trailers as JSON, or nothing
//   RST   the stream is abandoned
import { readFileSync } from 'node:fs';
import { connect, createServer, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer, type TLSSocket } from 'node:tls';

interface Tls {
  cert: string;
  key: string;
  ca: string;
}
export interface FrameRelaySetup {
  side: 'client' | 'server';
  listen: { port: number; tls?: Tls };
  upstream: { port: number; tls?: Tls };
}

const HEAD = 0;
const DATA = 1;
const END = 2;
const RST = 3;
const END_STREAM = 0x80;

/** Writes frames to a socket, the frames of one turn of the event loop in one write. */
class FrameWriter {
  private pending: Buffer[] = [];
  constructor(private readonly socket: Socket | TLSSocket) {}
  frame(id: number, type: number, payload: Buffer | string = ''): void {
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const head = Buffer.allocUnsafe(8);
    head.writeUInt32BE(id, 0);
    head.writeUInt32BE(((type & 0xff) << 24) | body.length, 4);
    if (this.pending.length === 0) setImmediate(() => this.flush());
    this.pending.push(head, body);
  }
  private flush(): void {
    const out = this.pending;
    this.pending = [];
    this.socket.write(Buffer.concat(out));
  }
}

/** Calls `onFrame` for each whole frame read from `socket`. */
function readFrames(socket: Socket | TLSSocket, onFrame: (id: number, type: number, payload: Buffer) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    let at = 0;
    while (buffered.length - at >= 8) {
      const word = buffered.readUInt32BE(at + 4);
      const length = word & 0xffffff;
      if (buffered.length - at - 8 < length) break;
      onFrame(buffered.readUInt32BE(at), word >>> 24, buffered.subarray(at + 8, at + 8 + length));
      at += 8 + length;
    }
    buffered = buffered.subarray(at);
  });
}

const headOf = (h: IncomingHttpHeaders): string => {
  const out: Record<string, string | string[]> = {};
  for (const k in h) if (h[k] !== undefined) out[k] = h[k]!;
  return JSON.stringify(out);
};

const setup = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as FrameRelaySetup;

if (setup.side === 'client') {
  // h2c from the app; every stream goes to the server side as frames over one mTLS connection.
  const tls = setup.upstream.tls!;
  const socket = tlsConnect({ host: '127.0.0.1', port: setup.upstream.port, ...tls, checkServerIdentity: () => undefined });
  socket.setNoDelay(true);
  const writer = new FrameWriter(socket);
  const streams = new Map<number, { stream: ServerHttp2Stream; trailers: IncomingHttpHeaders }>();
  let nextId = 1;
  readFrames(socket, (id, type, payload) => {
    const s = streams.get(id);
    if (!s || s.stream.destroyed) return;
    const kind = type & 0x7f;
    if (kind === HEAD) {
      const head = JSON.parse(payload.toString()) as Record<string, string>;
      if (type & END_STREAM) {
        streams.delete(id);
        s.stream.respond(head, { endStream: true });
        return;
      }
      s.stream.respond(head, { waitForTrailers: true });
      s.stream.on('wantTrailers', () => s.stream.sendTrailers(s.trailers as Record<string, string>));
    } else if (kind === DATA) s.stream.write(Buffer.from(payload));
    else if (kind === END) {
      streams.delete(id);
      if (payload.length) s.trailers = JSON.parse(payload.toString()) as IncomingHttpHeaders;
      s.stream.end();
    } else if (kind === RST) {
      streams.delete(id);
      s.stream.close(2);
    }
  });
  const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on('stream', (stream, headers) => {
    const id = nextId;
    nextId += 2;
    streams.set(id, { stream, trailers: {} });
    stream.on('error', () => stream.destroy());
    stream.on('close', () => {
      if (streams.delete(id)) writer.frame(id, RST);
    });
    const ended = stream.readableEnded;
    writer.frame(id, HEAD | (ended ? END_STREAM : 0), headOf(headers));
    if (ended) return;
    stream.on('data', (chunk: Buffer) => writer.frame(id, DATA, chunk));
    stream.on('end', () => writer.frame(id, END));
  });
  server.on('sessionError', () => undefined);
  socket.once('secureConnect', () => server.listen(setup.listen.port, '127.0.0.1', () => console.log(`ready ${(server.address() as AddressInfo).port}`)));
} else {
  // Frames from the client side; every stream goes to the app as a stream of one h2c session.
  let app: ClientHttp2Session | undefined;
  const session = (): ClientHttp2Session => {
    if (app && !app.closed && !app.destroyed) return app;
    app = connect(`http://127.0.0.1:${setup.upstream.port}`);
    app.on('error', () => undefined);
    return app;
  };
  const tls = setup.listen.tls!;
  const serve = (socket: TLSSocket): void => {
    socket.setNoDelay(true);
    const writer = new FrameWriter(socket);
    const calls = new Map<number, ReturnType<ClientHttp2Session['request']>>();
    readFrames(socket, (id, type, payload) => {
      const kind = type & 0x7f;
      if (kind === HEAD) {
        const head = JSON.parse(payload.toString()) as Record<string, string>;
        delete head[':scheme'];
        const req = session().request(head, { endStream: (type & END_STREAM) !== 0, waitForTrailers: (type & END_STREAM) === 0 });
        calls.set(id, req);
        req.on('wantTrailers', () => req.sendTrailers({}));
        req.on('error', () => undefined);
        let trailers = '';
        req.on('trailers', (t: IncomingHttpHeaders) => (trailers = headOf(t)));
        req.on('response', (h: IncomingHttpHeaders, flags: number) => {
          if (flags & 1) {
            calls.delete(id);
            writer.frame(id, HEAD | END_STREAM, headOf(h));
            return;
          }
          writer.frame(id, HEAD, headOf(h));
          req.on('data', (chunk: Buffer) => writer.frame(id, DATA, chunk));
          req.on('end', () => {
            calls.delete(id);
            writer.frame(id, END, trailers);
          });
        });
        req.on('close', () => {
          if (calls.delete(id)) writer.frame(id, RST);
        });
        return;
      }
      const req = calls.get(id);
      if (!req) return;
      if (kind === DATA) req.write(Buffer.from(payload));
      else if (kind === END) req.end();
      else if (kind === RST) {
        calls.delete(id);
        req.close(8);
      }
    });
  };
  const server = tlsServer({ ...tls, requestCert: true, rejectUnauthorized: true }, serve);
  server.listen(setup.listen.port, '127.0.0.1', () => console.log(`ready ${(server.address() as AddressInfo).port}`));
}
process.on('SIGTERM', () => process.exit(0));
