// The innermost HTTP handler: sends the request to one endpoint over a pooled
// HTTP/1.1 connection and returns its response. To a meshed endpoint, the
// pool's connections are streams of one mTLS connection (tsmesh/mux,
// net/mux.ts), or mTLS connections of their own when the endpoint's proxy does
// not speak tsmesh/mux; to the app and to endpoints without a sidecar, TCP.
// The framing is the proxy's own (h1/head.ts, h1/body.ts): the request head
// is one string written with the body's first bytes, the response head is
// parsed in one pass, and the body streams as the socket delivers it. A
// connection goes back to its pool once both bodies are complete and both
// sides allow it; anything else (an error, an abort, `connection: close`, a
// body cut short) ends it.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import type { ResolvedEndpoint } from '../config/table.js';
import { MuxSession, StreamResetError } from '../net/mux.js';
import { copiedReads } from '../net/read-into.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { MESH_ALPN } from '../tls/alpn.js';
import { connectEndpoint } from '../upstream.js';
import { BodyDecoder, writeBody } from './h1/body.js';
import { HeadReader, parseResponseHead, type ResponseHead } from './h1/head.js';
import { monotonicScheduler } from '../../lib/scheduler.js';
import type { RequestSignal } from './cancel.js';
import { OverloadedError, PendingQueue } from './limits.js';
import { bufferedBody, type Body, type ProxyRequest, type ProxyResponse, type ResponseMeta } from './types.js';

export type EndpointAddress = Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>;

/** Larger response heads are a 502. */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** An idle pooled connection is closed after this. */
const IDLE_MS = 30_000;
/** At most this many connections per endpoint; requests beyond wait for one. */
const MAX_CONNECTIONS = 256;
/**
 * Requests that may wait for a connection of one pool, and for how long; past
 * either, 503 overloaded. Outbound, the balancer's limits (http/limits.ts)
 * hold requests back before they reach a pool; this bounds what reaches one
 * anyway (several services on one endpoint) and the inbound pool to the app.
 */
const MAX_PENDING = 1024;
const PENDING_TIMEOUT_MS = 3000;

/** The endpoint closed or reset the connection before the response ended. */
export class UpstreamResetError extends Error {
  override name = 'UpstreamResetError';
  readonly code = 'ECONNRESET';
  /** Some of the response had arrived: the request was seen, so it is not replayed here. */
  answered = false;
  /** The endpoint's proxy refused the stream unread (it is going away): the request can go again. */
  refused = false;
}

/** Connection pools per endpoint (address, port and expected identity). */
export class EndpointPools {
  private readonly pools = new Map<string, H1Pool>();
  private readonly byEndpoint = new WeakMap<EndpointAddress, H1Pool>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly meshTls: MeshTls | undefined) {}

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  pool(ep: EndpointAddress): H1Pool {
    // An endpoint object of the config (or an inbound connection's app address) finds its pool without a key being built.
    const known = this.byEndpoint.get(ep);
    if (known !== undefined && !known.closed) return known;
    const key = EndpointPools.key(ep);
    let pool = this.pools.get(key);
    if (pool) this.byEndpoint.set(ep, pool);
    else {
      pool = new H1Pool(ep, this.meshTls);
      this.pools.set(key, pool);
      this.byEndpoint.set(ep, pool);
      this.sweeper ??= setInterval(() => {
        for (const p of this.pools.values()) p.closeIdle(IDLE_MS);
      }, IDLE_MS / 3).unref();
    }
    return pool;
  }

  /** Closes pools of endpoints no longer in `keep` (in-flight requests finish first). */
  retain(keep: readonly EndpointAddress[]): void {
    const wanted = new Set(keep.map(EndpointPools.key));
    for (const [key, pool] of this.pools) {
      if (!wanted.has(key)) {
        this.pools.delete(key);
        pool.close();
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.close()));
  }
}

export function forward(pools: EndpointPools, ep: EndpointAddress, req: ProxyRequest): Promise<ProxyResponse> {
  return pools.pool(ep).request(req);
}

/**
 * A pooled connection. Its socket handlers are set once and hand each event
 * to the exchange in progress, if any: a request adds no socket listeners.
 */
class Conn {
  idleSince = 0;
  /** Requests it has carried. */
  uses = 1;
  exchange: Exchange | undefined;
  private sock: Socket | undefined;
  /** Bytes came before the socket was handed over: nobody asked for them. */
  private early = false;

  get socket(): Socket {
    return this.sock!;
  }

  /** Its socket's reads (net's `onread`): into one shared buffer, handed on as copies. */
  readonly onread = copiedReads((d) => this.onRead(d));
  /** Its stream's reads, when it is a tsmesh/mux stream. */
  readonly onStreamData = (d: Buffer): void => void this.onRead(d);

  private onRead(d: Buffer): boolean {
    if (this.exchange) {
      this.exchange.onData(d);
      return true;
    }
    // Bytes nobody asked for: the connection is out of step with the endpoint.
    if (this.sock) this.sock.destroy();
    else this.early = true;
    return false;
  }

  /** Takes the connected socket that reads through `onread`. */
  attach(socket: Socket): this {
    this.sock = socket;
    if (this.early) socket.destroy();
    socket.setNoDelay(true);
    socket.on('end', () => this.exchange?.onEnd());
    socket.on('close', () => this.exchange?.onEnd());
    // Between requests an error (a reset of an idle connection) only closes it.
    socket.on('error', (e: Error) => this.exchange?.onError(e));
    return this;
  }
}

const ignore = (): void => undefined;
const NO_BODY = { kind: 'none' } as const;

class H1Pool {
  private readonly idle: Conn[] = [];
  private open = 0;
  private readonly waiting = new PendingQueue(monotonicScheduler);
  /** Set by close(), for good: EndpointPools makes a new pool for the endpoint if it comes back. */
  closed = false;
  readonly authority: string;
  /** The endpoint's proxy speaks only tsmesh/h1: each connection is an mTLS connection of its own. */
  private h1Only = false;
  /** The tsmesh/mux connection to the endpoint, while it takes new streams. */
  private muxing: Promise<MuxSession | undefined> | undefined;

  constructor(
    readonly ep: EndpointAddress,
    private readonly meshTls: MeshTls | undefined,
  ) {
    this.authority = `${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`;
  }

  /** Sends `req` on an idle connection when there is one (no promise is awaited before it goes out), else on a new one. */
  request(req: ProxyRequest): Promise<ProxyResponse> {
    const conn = this.takeIdle();
    if (conn === undefined) return this.requestSlow(req);
    return this.exchange(conn, req).catch((e: unknown) => (this.replayable(e, conn, req) ? this.requestSlow(req) : Promise.reject(e as Error)));
  }

  private async requestSlow(req: ProxyRequest): Promise<ProxyResponse> {
    let connectMs = 0;
    for (;;) {
      const waitedFrom = performance.now();
      const conn = await this.take(req.signal);
      connectMs += performance.now() - waitedFrom;
      try {
        return await this.exchange(conn, req, connectMs);
      } catch (e) {
        if (this.replayable(e, conn, req)) continue;
        throw e;
      }
    }
  }

  /** `connectMs`: how long the request waited for `conn` (ResponseMeta.connectMs). */
  private exchange(conn: Conn, req: ProxyRequest, connectMs = 0): Promise<ProxyResponse> {
    return new Promise<ProxyResponse>((resolve, reject) => new Exchange(this, conn, req, connectMs, resolve, reject).start());
  }

  /**
   * A kept-alive connection the endpoint closed just as it was reused: nothing of the request
   * was answered, and a request without a body can go again, once, on a new connection.
   */
  private replayable(e: unknown, conn: Conn, req: ProxyRequest): boolean {
    return e instanceof UpstreamResetError && (conn.uses > 1 || e.refused) && !e.answered && req.body === null && !req.signal.aborted;
  }

  /** An idle connection that is still open, if the pool has one. */
  private takeIdle(): Conn | undefined {
    if (this.closed) return undefined;
    for (;;) {
      const conn = this.idle.pop();
      if (conn === undefined) return undefined;
      if (conn.socket.destroyed || conn.socket.readableEnded) {
        this.lost();
        continue;
      }
      conn.uses++;
      return conn;
    }
  }

  private async take(signal: RequestSignal): Promise<Conn> {
    let deadline: number | undefined;
    for (;;) {
      if (this.closed) throw new Error(`the pool of ${this.authority} is closed (the endpoint left the config)`);
      const conn = this.takeIdle();
      if (conn) return conn;
      if (this.open < MAX_CONNECTIONS) break;
      // A caller that goes away leaves the queue at once (the wait rejects with its reason).
      const waited = await this.waiting.wait(signal, (deadline ??= monotonicScheduler.now() + PENDING_TIMEOUT_MS), MAX_PENDING);
      if (waited === 'full') throw new OverloadedError('pool-pending', `${this.authority} has ${MAX_CONNECTIONS} requests in flight and ${MAX_PENDING} waiting for a connection`);
      if (waited === 'timeout') throw new OverloadedError('pool-pending', `no connection to ${this.authority} came free within ${PENDING_TIMEOUT_MS} ms (${MAX_CONNECTIONS} in flight)`);
    }
    this.open++;
    try {
      const conn = new Conn();
      const session = this.meshTls && this.ep.identity && !this.h1Only ? await this.session() : undefined;
      if (session) {
        const stream = session.open();
        stream.reader = conn.onStreamData;
        // The pool uses a stream as it uses a socket (write, pause, resume, destroy, and their events).
        return conn.attach(stream as unknown as Socket);
      }
      return conn.attach((await connectEndpoint(this.meshTls, this.ep, MESH_ALPN.http1, undefined, conn.onread)) as Socket);
    } catch (e) {
      this.lost();
      throw e;
    }
  }

  /** The mux session to open a stream on, connecting one if need be; undefined when the endpoint has none. */
  private async session(): Promise<MuxSession | undefined> {
    for (;;) {
      const pending = (this.muxing ??= this.connectMux());
      let session: MuxSession | undefined;
      try {
        session = await pending;
      } catch (e) {
        if (this.muxing === pending) this.muxing = undefined;
        throw e;
      }
      if (session === undefined || session.usable) return session;
      // Closed, or the endpoint said GOAWAY: the next stream goes on a new connection.
      if (this.muxing === pending) this.muxing = undefined;
    }
  }

  private async connectMux(): Promise<MuxSession | undefined> {
    const socket = await connectEndpoint(this.meshTls, this.ep, [MESH_ALPN.mux, MESH_ALPN.http1]);
    if ((socket as TLSSocket).alpnProtocol !== MESH_ALPN.mux) {
      // A proxy that predates tsmesh/mux chose tsmesh/h1: from now on a connection per HTTP/1.1 connection, as it expects.
      socket.destroy();
      this.h1Only = true;
      return undefined;
    }
    return new MuxSession(socket);
  }

  /** No stream is open: the mux connection ends (a new one is made when a request comes). */
  private endMuxIfUnused(): void {
    if (this.open === 0) this.endMux();
  }

  /** The mux connection takes no new stream and ends after the streams it has. */
  private endMux(): void {
    const pending = this.muxing;
    this.muxing = undefined;
    void pending?.then(
      (s) => s?.goAway(),
      () => undefined,
    );
  }

  /** A connection ended: a waiting request may open one. */
  private lost(): void {
    this.open--;
    this.waiting.wake();
  }

  release(conn: Conn, reusable: boolean): void {
    conn.exchange = undefined;
    if (!reusable || this.closed || conn.socket.destroyed) {
      conn.socket.destroy();
      this.lost();
      return;
    }
    conn.idleSince = performance.now();
    this.idle.push(conn);
    this.waiting.wake();
  }

  closeIdle(ms: number): void {
    const now = performance.now();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i]!;
      if (now - c.idleSince >= ms || c.socket.destroyed) {
        this.idle.splice(i, 1);
        c.socket.destroy();
        this.lost();
      }
    }
    this.endMuxIfUnused();
  }

  close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) {
      c.socket.destroy();
      this.open--;
    }
    this.waiting.wakeAll();
    // Streams in flight finish first; the mux connection ends after the last.
    this.endMux();
    return Promise.resolve();
  }
}

/** One request and its response on one connection. */
class Exchange {
  private readonly socket: Socket;
  private reader: HeadReader | undefined;
  private head: ResponseHead | undefined;
  private decoder: BodyDecoder | undefined;
  private body: Body | null = null;
  /** The response body while it streams in: what the decoder pushes into. */
  private stream: Readable | undefined;
  private requestSent: boolean;
  private responseDone = false;
  private finished = false;
  /** The request body is framed as its Content-Length says, else chunked. */
  private readonly chunked: boolean;
  private readonly onAbort = (): void => this.finish(this.req.signal.reason as Error);

  constructor(
    private readonly pool: H1Pool,
    private readonly conn: Conn,
    private readonly req: ProxyRequest,
    private readonly connectMs: number,
    private readonly resolve: (res: ProxyResponse) => void,
    private readonly reject: (e: Error) => void,
  ) {
    this.socket = conn.socket;
    this.requestSent = req.body === null;
    this.chunked = req.body !== null && req.headers['content-length'] === undefined;
  }

  start(): void {
    const { req, socket } = this;
    if (req.signal.aborted) {
      this.finish(req.signal.reason as Error);
      return;
    }
    this.conn.exchange = this;
    req.signal.addEventListener('abort', this.onAbort, { once: true });
    socket.resume();
    let out = `${req.method} ${req.path} HTTP/1.1\r\n`;
    let host = false;
    for (const name in req.headers) {
      const v = req.headers[name];
      if (v === undefined || name.charCodeAt(0) === 0x3a) continue;
      if (name === 'host') host = true;
      if (typeof v === 'string') out += `${name}: ${v}\r\n`;
      else for (const one of v) out += `${name}: ${one}\r\n`;
    }
    if (!host) out += `host: ${this.pool.authority}\r\n`;
    if (this.chunked) out += 'transfer-encoding: chunked\r\n';
    out += '\r\n';
    if (req.body === null) {
      socket.write(out, 'latin1');
      return;
    }
    writeBody(socket, out, req.body, this.chunked, (e) => {
      if (e) {
        this.finish(e);
        return;
      }
      this.requestSent = true;
      this.maybeDone();
    });
  }

  onData(chunk: Buffer): void {
    try {
      let data = chunk;
      let i = 0;
      while (i < data.length) {
        if (this.decoder === undefined) {
          const got = (this.reader ??= new HeadReader(MAX_RESPONSE_HEAD_BYTES, 502)).feed(data, i);
          if (!got) return;
          data = got.buf;
          i = got.next;
          const h = parseResponseHead(got.text, this.req.method);
          // 1xx (100 Continue, 103 Early Hints) precede the response; the proxy answers Expect itself.
          if (h.status < 200) continue;
          i = this.respond(h, data, i);
          if (this.decoder!.done) {
            this.responseEnded(i < data.length);
            return;
          }
        } else {
          i = this.decoder.feed(data, i, (d) => {
            if (!this.stream!.push(d)) this.socket.pause();
          });
          if (this.decoder.done) {
            this.stream!.push(null);
            this.responseEnded(i < data.length);
            return;
          }
        }
      }
    } catch (e) {
      this.finish(e as Error);
    }
  }

  /** Hands the response on; its head ended at data[at]. Returns where the unread bytes start. */
  private respond(h: ResponseHead, data: Buffer, at: number): number {
    this.head = h;
    const { framing } = h;
    let next = at;
    if (framing.kind === 'length' && framing.length > 0 && data.length - at >= framing.length) {
      // The whole body came with the head: it is handed on as bytes in memory, not streamed.
      next = at + framing.length;
      this.decoder = new BodyDecoder(NO_BODY, 502);
      this.body = bufferedBody(data.subarray(at, next));
    } else if (!(this.decoder = new BodyDecoder(framing, 502)).done) {
      const socket = this.socket;
      const b = (this.body = this.stream = new Readable({ read: () => socket.resume() }));
      // Whoever reads it may have stopped listening when the endpoint goes away.
      b.on('error', ignore);
      // The reader let go of the body (its client left): the connection cannot be reused.
      b.once('close', () => {
        if (!b.readableEnded) this.finish(new UpstreamResetError('the response body was abandoned'));
      });
    }
    const meta: ResponseMeta = this.pool.ep.identity ? { peerIdentity: this.pool.ep.identity } : {};
    if (this.connectMs > 0) meta.connectMs = this.connectMs;
    this.resolve({ status: h.status, headers: h.headers, body: this.body, meta });
    return next;
  }

  /** The response is complete; `extra`: the endpoint sent more than it (the connection is out of step). */
  private responseEnded(extra: boolean): void {
    this.responseDone = true;
    // A response before the request body was all sent, or bytes after it: the connection cannot be reused.
    if (!this.requestSent || extra) this.head!.keepAlive = false;
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.responseDone && this.requestSent) this.finish();
  }

  onEnd(): void {
    if (this.finished || this.responseDone) return;
    if (this.decoder?.untilClose) {
      this.stream!.push(null);
      this.requestSent = true;
      this.head!.keepAlive = false;
      this.responseEnded(false);
      return;
    }
    const authority = this.pool.authority;
    this.fail(new UpstreamResetError(this.head === undefined ? `${authority} closed the connection before it answered` : `${authority} closed the connection in the middle of its response`));
  }

  onError(e: Error): void {
    const err = new UpstreamResetError(`${this.pool.authority}: ${e.message}`);
    err.refused = e instanceof StreamResetError && e.refused;
    this.fail(err);
  }

  private fail(err: UpstreamResetError): void {
    if (this.reader?.started || this.head !== undefined) err.answered = true;
    this.finish(err);
  }

  /** Ends the exchange: the connection goes back to the pool or is closed. */
  private finish(e?: Error): void {
    if (this.finished) return;
    this.finished = true;
    const { req } = this;
    req.signal.removeEventListener('abort', this.onAbort);
    if (e) {
      if (this.head === undefined) this.reject(e);
      else if (this.body && !this.stream?.readableEnded) this.body.destroy(e);
      req.body?.destroy();
      this.pool.release(this.conn, false);
      return;
    }
    this.pool.release(this.conn, this.head!.keepAlive);
  }
}
