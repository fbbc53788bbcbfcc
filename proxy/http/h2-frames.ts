// tsmesh/h2f (a prototype, off unless TSMESH_H2_FRAMES is on at the caller's
// side): HTTP/2 requests between two sidecars as frames of the proxy's own
// over one mTLS connection, instead of a node:http2 session. node:http2 then
// runs only where the app speaks it (the outbound listener's server stream,
// the inbound forwarder's stream to the app): one node:http2 stream per
// sidecar per call instead of two, which was most of a gRPC call's CPU
// (docs/performance.md, "Where a gRPC call's CPU goes").
//
// Frame: stream id (u32), type (u8), payload length (u24), payload; the
// client opens odd ids, rising.
//   HEAD  the head as JSON ({name: value}, pseudo-headers included); the
//         type's high bit (END_STREAM) when no body follows
//   DATA  body bytes (at most MAX_PAYLOAD a frame)
//   END   the body is whole; payload: its trailers as JSON, or nothing
//   RST   the stream is abandoned (the caller left, or the other side failed)
//   WINDOW payload: u32, body bytes the receiver's reader has taken
//   GOAWAY (stream 0) the server is draining: its streams go on to their end,
//          new ones go to a new connection (another endpoint, as a rule)
// Flow control is per stream, as tsmesh/mux has it: a sender has at most
// STREAM_WINDOW body bytes unacknowledged, so a reader that stops (an app
// reading a server stream slowly) holds back its sender instead of filling
// the receiving sidecar's memory.
// The frames every stream writes in one turn of the event loop go out in
// one write.
//
// A client offers tsmesh/h2f and tsmesh/h2: a peer that picks tsmesh/h2 (a
// sidecar without tsmesh/h2f) is reached over node:http2 as before. What
// the prototype leaves out: limits on streams and memory per connection
// (tsmesh/mux's budget).
import { Readable, type Duplex } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http2';
import type { Logger } from '../../lib/log.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { MESH_ALPN } from '../tls/alpn.js';
import { connectEndpoint } from '../upstream.js';
import type { EndpointAddress } from './forward.js';
import { Cancellation } from './cancel.js';
import { asGrpcAnswer, formatGrpcTimeout, isGrpc } from './grpc.js';
import { HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS } from './h2-module.js';
import { h2RequestHeaders } from './h2-server.js';
import { ResponseHeadTimeoutError } from './timeout.js';
import { HEAD_WAITS, type HeadWait } from './head-waits.js';
import { bufferedBody, bufferOf, copyEndToEnd, emptyHeaders, localResponse, MemoryBody, streamOf, type Body, type Handler, type ProxyRequest, type ProxyResponse, type ResponseMeta, type TrailerSource } from './types.js';

const HEAD = 0;
const DATA = 1;
const END = 2;
const RST = 3;
const WINDOW = 4;
const GOAWAY = 5;
const END_STREAM = 0x80;
/** Body bytes a sender may have unacknowledged on one stream; past them it pauses its source. */
const STREAM_WINDOW = 256 * 1024;
/** A receiver acknowledges what its reader has taken once this much has gathered. */
const WINDOW_UPDATE_BYTES = 64 * 1024;
const HEADER_BYTES = 8;
const MAX_PAYLOAD = 0xffffff;
const EMPTY = Buffer.alloc(0);

type Fields = Record<string, string | string[] | undefined>;

/** One mTLS connection carrying frames, either side: writes batched per turn, reads cut into frames. */
class FrameConnection {
  private pending: Buffer[] = [];
  private buffered: Buffer = EMPTY;
  closed = false;

  constructor(
    readonly socket: Duplex,
    private readonly onFrame: (id: number, type: number, payload: Buffer) => void,
    private readonly onClose: (error: Error) => void,
    /** After the frames of one read: what waited to see whether a body came whole with its head. */
    private readonly onReadEnd: () => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      this.onClose(new Error('the tsmesh/h2f connection closed'));
    });
    // HTTP/2 has no half-closed connection, nor does this: the peer's end is the connection's.
    socket.on('end', () => socket.destroy());
  }

  send(id: number, type: number, payload: Buffer | string = EMPTY): void {
    if (this.closed) return;
    let body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    while (body.length > MAX_PAYLOAD && (type & 0x7f) === DATA) {
      this.send(id, DATA, body.subarray(0, MAX_PAYLOAD));
      body = body.subarray(MAX_PAYLOAD);
    }
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    head.writeUInt32BE(id, 0);
    head.writeUInt32BE((((type & 0xff) << 24) | body.length) >>> 0, 4);
    if (this.pending.length === 0) setImmediate(() => this.flush());
    this.pending.push(head);
    if (body.length) this.pending.push(body);
  }

  private flush(): void {
    const out = this.pending;
    this.pending = [];
    if (!this.closed && out.length) this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  private read(chunk: Buffer): void {
    let buf = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= HEADER_BYTES) {
      const word = buf.readUInt32BE(at + 4);
      const length = word & 0xffffff;
      if (buf.length - at - HEADER_BYTES < length) break;
      this.onFrame(buf.readUInt32BE(at), word >>> 24, buf.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length));
      at += HEADER_BYTES + length;
    }
    this.onReadEnd();
    buf = buf.subarray(at);
    // What is left is kept as a copy: the socket's chunk may be a view of a buffer that gets reused.
    this.buffered = buf.length ? Buffer.from(buf) : EMPTY;
  }
}

const encode = (fields: Fields): string => {
  const out: Record<string, string | string[]> = {};
  for (const k in fields) {
    const v = fields[k];
    if (v !== undefined) out[k] = v;
  }
  return JSON.stringify(out);
};
const decode = (payload: Buffer): IncomingHttpHeaders => Object.assign(emptyHeaders(), JSON.parse(payload.toString('utf8')) as IncomingHttpHeaders);

/**
 * A body that arrives as DATA frames: pushed as they come. It may be failed
 * before anyone reads it (the call cancelled, the connection gone): such an
 * error is for whoever reads it later, never an uncaught one.
 */
function frameBody(wantsMore: () => void): Readable {
  const body = new Readable({ read: wantsMore });
  body.on('error', () => undefined);
  return body;
}

/**
 * A message arriving as frames. Its body is decided once the read that
 * brought its head has been gone through: whole in memory (a MemoryBody,
 * which the forwarders write with the head, no stream made) when its DATA
 * and END came in the same read, as a small gRPC message's do; else a
 * stream its frames are pushed into as they come.
 */
class Incoming {
  private chunks: Buffer[] = [];
  private ended = false;
  private stream: Readable | undefined;
  /** Bytes taken but not yet acknowledged, and bytes held until the reader wants more. */
  private taken = 0;
  private held = 0;
  trailers: IncomingHttpHeaders | undefined;

  constructor(
    private readonly conn: FrameConnection,
    private readonly id: number,
  ) {}

  data(chunk: Buffer): void {
    if (!this.stream) {
      this.chunks.push(chunk);
      this.took(chunk.length);
    } else if (this.stream.push(chunk)) this.took(chunk.length);
    else this.held += chunk.length;
  }

  private took(n: number): void {
    this.taken += n;
    if (this.taken < WINDOW_UPDATE_BYTES || this.ended) return;
    const credit = Buffer.allocUnsafe(4);
    credit.writeUInt32BE(this.taken, 0);
    this.taken = 0;
    this.conn.send(this.id, WINDOW, credit);
  }

  end(trailers: IncomingHttpHeaders | undefined): void {
    this.trailers = trailers;
    if (this.stream) this.stream.push(null);
    else this.ended = true;
  }

  /** Fails a body handed out as a stream (one in memory is whole already). */
  fail(error: Error): void {
    this.stream?.destroy(error);
  }

  body(): Body {
    if (this.ended) return bufferedBody(this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks));
    const stream = frameBody(() => {
      // The reader wants more: what was held back from it is acknowledged now.
      const held = this.held;
      this.held = 0;
      if (held) this.took(held);
    });
    for (const c of this.chunks) stream.push(c);
    this.chunks = [];
    this.stream = stream;
    return stream;
  }
}

/** A body sent as DATA frames from a stream: paused while STREAM_WINDOW bytes of it are unacknowledged. */
class Outgoing {
  private unacked = 0;

  constructor(
    private readonly conn: FrameConnection,
    private readonly id: number,
    private readonly source: Readable,
  ) {}

  send(chunk: Buffer): void {
    this.unacked += chunk.length;
    this.conn.send(this.id, DATA, chunk);
    if (this.unacked >= STREAM_WINDOW) this.source.pause();
  }

  credit(payload: Buffer): void {
    if (payload.length < 4) return;
    this.unacked -= payload.readUInt32BE(0);
    if (this.unacked < STREAM_WINDOW && this.source.isPaused()) this.source.resume();
  }
}

/** A client's stream in flight, as the client side knows it: its answer's head (and body, null for none), or its failure. */
interface Call {
  head(status: number, headers: IncomingHttpHeaders, body: Incoming | null): void;
  fail(error: Error): void;
}

/** The client side of one connection: opens streams, hands each frame to its call. */
export class FrameClient {
  private nextId = 1;
  /** The server said GOAWAY: no new streams here; the connection ends with its last one. */
  goingAway = false;
  /** Called once when the server says GOAWAY. */
  onGoAway: (() => void) | undefined;
  private readonly calls = new Map<number, { call: Call; answer?: Incoming; out?: Outgoing }>();
  private answered: (() => void)[] = [];
  readonly connection: FrameConnection;

  constructor(socket: Duplex) {
    this.connection = new FrameConnection(
      socket,
      (id, type, payload) => this.frame(id, type, payload),
      (error) => {
        const calls = [...this.calls.values()];
        this.calls.clear();
        for (const c of calls) {
          c.answer?.fail(error);
          c.call.fail(error);
        }
      },
      () => {
        const answered = this.answered;
        if (answered.length === 0) return;
        this.answered = [];
        for (const a of answered) a();
      },
    );
  }

  open(call: Call): number {
    const id = this.nextId;
    this.nextId += 2;
    this.calls.set(id, { call });
    return id;
  }

  forget(id: number): void {
    this.calls.delete(id);
    this.endWhenIdle();
  }

  /** After GOAWAY, the connection ends once no stream is left on it. */
  endWhenIdle(): void {
    if (this.goingAway && this.calls.size === 0) this.connection.socket.end();
  }

  /** The request body of stream `id` goes from `source`, held to the stream's window. */
  sending(id: number, source: Readable): Outgoing {
    const out = new Outgoing(this.connection, id, source);
    const c = this.calls.get(id);
    if (c) c.out = out;
    return out;
  }

  private frame(id: number, type: number, payload: Buffer): void {
    if (id === 0 && (type & 0x7f) === GOAWAY) {
      if (this.goingAway) return;
      this.goingAway = true;
      this.onGoAway?.();
      this.endWhenIdle();
      return;
    }
    const c = this.calls.get(id);
    if (!c) return;
    const kind = type & 0x7f;
    if (kind === HEAD) {
      const all = decode(payload);
      const status = Number(all[HTTP2_HEADER_STATUS]);
      const fields = emptyHeaders();
      for (const k in all) if (k.charCodeAt(0) !== 0x3a) fields[k] = all[k];
      if ((type & END_STREAM) !== 0) {
        this.calls.delete(id);
        c.call.head(status, fields, null);
        this.endWhenIdle();
        return;
      }
      const answer = (c.answer = new Incoming(this.connection, id));
      this.answered.push(() => c.call.head(status, fields, answer));
    } else if (kind === DATA) c.answer?.data(Buffer.from(payload));
    else if (kind === END) {
      this.calls.delete(id);
      c.answer?.end(payload.length ? decode(payload) : undefined);
      this.endWhenIdle();
    } else if (kind === WINDOW) c.out?.credit(payload);
    else if (kind === RST) {
      this.calls.delete(id);
      this.endWhenIdle();
      const error = new Error('the peer reset the stream (tsmesh/h2f)');
      c.answer?.fail(error);
      c.call.fail(error);
    }
  }
}

/**
 * One tsmesh/h2f connection per meshed endpoint, opened on first use, as
 * H2Sessions keeps node:http2 sessions. The handshake offers tsmesh/h2f and
 * tsmesh/h2: an endpoint whose sidecar picks tsmesh/h2 (one without
 * tsmesh/h2f) is remembered as such, and its requests go over node:http2.
 */
export class FrameSessions {
  private readonly clients = new Map<string, Promise<FrameClient | undefined>>();
  /** Endpoints whose sidecar speaks tsmesh/h2 only, until the config no longer names them. */
  private readonly h2Only = new Set<string>();

  constructor(private readonly meshTls: MeshTls | undefined) {}

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  /** The endpoint's connection; undefined when its sidecar does not speak tsmesh/h2f. */
  client(ep: EndpointAddress): Promise<FrameClient | undefined> {
    const key = FrameSessions.key(ep);
    if (this.h2Only.has(key)) return Promise.resolve(undefined);
    let c = this.clients.get(key);
    if (!c) {
      c = connectEndpoint(this.meshTls, ep, [MESH_ALPN.frames, MESH_ALPN.http2]).then((socket) => {
        if ((socket as { alpnProtocol?: string | false }).alpnProtocol === MESH_ALPN.frames) {
          const client = new FrameClient(socket);
          // A draining endpoint: the next request opens a new connection.
          client.onGoAway = () => {
            if (this.clients.get(key) === c) this.clients.delete(key);
          };
          return client;
        }
        this.h2Only.add(key);
        socket.destroy();
        return undefined;
      });
      this.clients.set(key, c);
      const forget = (): void => {
        if (this.clients.get(key) === c) this.clients.delete(key);
      };
      c.then((client) => (client ? client.connection.socket.once('close', forget) : forget()), forget);
    }
    return c;
  }

  retain(keep: readonly EndpointAddress[]): void {
    const wanted = new Set(keep.map(FrameSessions.key));
    for (const key of this.h2Only) if (!wanted.has(key)) this.h2Only.delete(key);
    for (const [key, c] of this.clients) {
      if (wanted.has(key)) continue;
      this.clients.delete(key);
      void c.then((client) => client?.connection.socket.end(), () => undefined);
    }
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.then((client) => void client?.connection.socket.destroy(), () => undefined)));
  }
}

/** Sends `req` to a meshed endpoint over its tsmesh/h2f connection: what forwardH2 does over a node:http2 session. */
export function forwardFrames(client: FrameClient, ep: EndpointAddress, req: ProxyRequest, headTimeoutMs: number, connectMs: number): Promise<ProxyResponse> {
  const conn = client.connection;
  const head: Fields = emptyHeaders<Fields>();
  head[HTTP2_HEADER_METHOD] = req.method;
  head[HTTP2_HEADER_PATH] = req.path;
  head[HTTP2_HEADER_AUTHORITY] = req.headers.host ?? `${ep.address}:${ep.port}`;
  for (const k in req.headers) if (k !== 'host') head[k] = req.headers[k];
  if (req.deadline !== undefined) head['grpc-timeout'] = formatGrpcTimeout(req.deadline - performance.now());
  const meta: ResponseMeta = ep.identity ? { peerIdentity: ep.identity, connectMs } : { connectMs };
  return new Promise<ProxyResponse>((resolve, reject) => {
    let body: Body | undefined;
    let answered = false;
    const headWait: HeadWait = {
      headDeadline: 0,
      onHeadTimeout: () => {
        client.forget(id);
        conn.send(id, RST);
        done();
        reject(new ResponseHeadTimeoutError(headTimeoutMs));
      },
    };
    const done = (): void => {
      HEAD_WAITS.delete(headWait);
      req.signal.removeEventListener('abort', onAbort);
    };
    const id = client.open({
      head(status, headers, answer) {
        answered = true;
        HEAD_WAITS.delete(headWait);
        if (answer === null) {
          done();
          resolve({ status, headers, body: null, meta });
          return;
        }
        body = answer.body();
        // Done with the request once the body is whole: a cancellation after that finds nothing to reset.
        if (body instanceof MemoryBody) done();
        else body.once('end', done);
        const trailers: TrailerSource = () => answer.trailers;
        resolve({ status, headers, body, meta, trailers });
      },
      fail(error) {
        done();
        if (!answered) reject(error);
        else body?.destroy(error);
      },
    });
    const onAbort = (): void => {
      client.forget(id);
      conn.send(id, RST);
      done();
      const error = new Error('the request was cancelled');
      if (!answered) reject(error);
      else body?.destroy(error);
    };
    req.signal.addEventListener('abort', onAbort);
    const waitForHead = (): void => {
      if (headTimeoutMs > 0 && !answered) HEAD_WAITS.add(headWait, headTimeoutMs);
    };
    conn.send(id, HEAD | (req.body === null ? END_STREAM : 0), encode(head));
    if (req.body === null) {
      waitForHead();
      return;
    }
    const requestTrailers = req.trailers;
    const bytes = bufferOf(req.body);
    if (bytes) {
      // A body whole in memory goes with its head, in the same write.
      conn.send(id, DATA, bytes);
      const t = requestTrailers?.();
      conn.send(id, END, t ? encode(t) : EMPTY);
      waitForHead();
      return;
    }
    const source = streamOf(req.body);
    const out = client.sending(id, source);
    source.on('data', (chunk: Buffer) => out.send(chunk));
    source.on('end', () => {
      const t = requestTrailers?.();
      conn.send(id, END, t ? encode(t) : EMPTY);
      waitForHead();
    });
    source.on('error', () => onAbort());
  });
}

/** What the inbound listener holds of a tsmesh/h2f connection it serves. */
export interface FrameServer {
  /** Draining: tells the client to open no more streams here; those open go on to their end. */
  goAway(): void;
  readonly socket: Duplex;
}

/** Serves the tsmesh/h2f streams of one verified caller's connection with `handler` (the inbound stack). */
export function serveFrames(socket: Duplex, handler: Handler, log: Logger): FrameServer {
  const streams = new Map<number, { request: Incoming | null; signal: Cancellation; out?: Outgoing }>();
  let arrived: (() => void)[] = [];
  const conn = new FrameConnection(
    socket,
    (id, type, payload) => {
      const kind = type & 0x7f;
      if (kind === HEAD) {
        const fields = decode(payload);
        const request = (type & END_STREAM) !== 0 ? null : new Incoming(conn, id);
        const s: { request: Incoming | null; signal: Cancellation; out?: Outgoing } = { request, signal: new Cancellation() };
        streams.set(id, s);
        if (request === null) void serveStream(id, fields, s, null);
        else arrived.push(() => void serveStream(id, fields, s, request.body()));
        return;
      }
      const s = streams.get(id);
      if (!s) return;
      if (kind === DATA) s.request?.data(Buffer.from(payload));
      else if (kind === END) s.request?.end(payload.length ? decode(payload) : undefined);
      else if (kind === WINDOW) s.out?.credit(payload);
      else if (kind === RST) {
        streams.delete(id);
        const error = new Error('the client reset the stream');
        s.signal.abort(error);
        s.request?.fail(error);
      }
    },
    (error) => {
      const all = [...streams.values()];
      streams.clear();
      for (const s of all) {
        s.signal.abort(error);
        s.request?.fail(error);
      }
    },
    () => {
      const starting = arrived;
      if (starting.length === 0) return;
      arrived = [];
      for (const start of starting) start();
    },
  );
  const serveStream = async (id: number, fields: IncomingHttpHeaders, s: { request: Incoming | null; signal: Cancellation; out?: Outgoing }, requestBody: Body | null): Promise<void> => {
    // A stream reset before its head was gone through is not served.
    if (streams.get(id) !== s) return;
    const req: ProxyRequest = {
      protocol: 'http2',
      method: String(fields[HTTP2_HEADER_METHOD] ?? 'GET'),
      path: String(fields[HTTP2_HEADER_PATH] ?? '/'),
      headers: h2RequestHeaders(fields),
      body: requestBody,
      startedAt: performance.now(),
      signal: s.signal,
    };
    const request = s.request;
    if (request) req.trailers = () => request.trailers;
    let response: ProxyResponse;
    try {
      response = await handler(req);
    } catch (e) {
      log.warn('request failed', { error: (e as Error).message });
      response = localResponse(502, 'proxy-error', `tsmesh: ${(e as Error).message}`);
    }
    if (isGrpc(req.headers)) response = asGrpcAnswer(response);
    if (!streams.has(id) || conn.closed) {
      response.body?.destroy();
      return;
    }
    const head = emptyHeaders<Fields>();
    head[HTTP2_HEADER_STATUS] = String(response.status);
    copyEndToEnd(response.headers as IncomingHttpHeaders, head, true);
    if (response.body === null) {
      streams.delete(id);
      conn.send(id, HEAD | END_STREAM, encode(head));
      return;
    }
    conn.send(id, HEAD, encode(head));
    const responseTrailers = response.trailers;
    const bytes = bufferOf(response.body);
    if (bytes) {
      streams.delete(id);
      conn.send(id, DATA, bytes);
      const t = responseTrailers?.();
      const out = emptyHeaders<Fields>();
      if (t) copyEndToEnd(t as IncomingHttpHeaders, out, true);
      conn.send(id, END, encode(out));
      return;
    }
    const body = streamOf(response.body);
    const out = (s.out = new Outgoing(conn, id, body));
    body.on('data', (chunk: Buffer) => {
      if (streams.has(id)) out.send(chunk);
    });
    body.on('end', () => {
      if (!streams.delete(id)) return;
      const t = responseTrailers?.();
      const out = emptyHeaders<Fields>();
      if (t) copyEndToEnd(t as IncomingHttpHeaders, out, true);
      conn.send(id, END, encode(out));
    });
    body.on('error', () => {
      if (streams.delete(id)) conn.send(id, RST);
    });
    body.on('close', () => {
      if (!body.readableEnded && streams.delete(id)) conn.send(id, RST);
    });
    // A client reset while the body streams lets go of the endpoint's body.
    s.signal.addEventListener('abort', () => body.destroy());
  };
  let saidGoAway = false;
  return {
    socket,
    goAway() {
      if (saidGoAway) return;
      saidGoAway = true;
      conn.send(0, GOAWAY);
    },
  };
}
