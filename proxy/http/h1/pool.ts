// One endpoint's pool of HTTP/1.1 connections (forward.ts keeps one per
// endpoint): a request takes an idle connection when there is one, else
// opens one (up to MAX_CONNECTIONS), else waits in line (up to MAX_PENDING,
// for PENDING_TIMEOUT_MS). To a meshed endpoint, connections are streams of
// one tsmesh/mux session, or mTLS connections of their own when its proxy
// does not speak tsmesh/mux. A request without a body whose kept-alive
// connection was closed under it, unanswered, goes again once on a new one.
//
// An upgrade (WebSocket) takes a new connection, a tsmesh/mux stream to a
// meshed endpoint, and keeps it after the 101, outside the pool: it counts
// against neither MAX_CONNECTIONS nor the requests waiting. A stream rather
// than an mTLS connection of its own (as Linkerd's and Envoy's sidecars give
// an upgrade) because, measured between two pods (test/netns/upgrade.test.ts,
// docs/internals.md), it opens in a third of the time with no handshake
// (what a reconnecting crowd of WebSockets would cost both proxies), holds
// about 60% of the heap and a third of the resident memory while idle,
// echoes small messages as fast, and the stream's window paces a bulk
// WebSocket so that the requests beside it are answered sooner; the mux
// budget bounds what slow readers hold. The streams of one connection are
// bounded (MAX_STREAMS): a full one takes no more, and the next stream goes
// on a new connection.
import type { OnReadOpts, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MAX_STREAMS, MuxSession } from '../../net/mux.js';
import type { MeshTls } from '../../tls/mesh-tls.js';
import { MESH_ALPN } from '../../tls/alpn.js';
import { connectEndpoint } from '../../upstream.js';
import { monotonicScheduler } from '../../../lib/scheduler.js';
import type { RequestSignal } from '../cancel.js';
import type { EndpointAddress } from '../forward.js';
import { OverloadedError, PendingQueue } from '../limits.js';
import type { ProxyRequest, ProxyResponse } from '../types.js';
import { Conn } from './connection.js';
import { Exchange, UpstreamResetError } from './exchange.js';

/** An idle pooled connection is closed after this. */
export const IDLE_MS = 30_000;
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

export class H1Pool {
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
  /** That connection, once it is up. */
  private mux: MuxSession | undefined;

  constructor(
    readonly ep: EndpointAddress,
    private readonly meshTls: MeshTls | undefined,
    /** Opens each connection instead of connectEndpoint (TLS the proxy originates to a destination outside the mesh). */
    private readonly dial?: (onread: OnReadOpts) => Promise<Socket>,
  ) {
    this.authority = `${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`;
  }

  /**
   * Sends `req` on an idle connection when there is one (no promise is awaited before it goes out), else on a new one.
   * `headTimeoutMs`: how long its response head may take once it has been sent whole (0: no bound; http/timeout.ts).
   */
  request(req: ProxyRequest, headTimeoutMs = 0): Promise<ProxyResponse> {
    const conn = req.upgrade === undefined ? this.takeIdle() : undefined;
    if (conn === undefined) return this.requestSlow(req, headTimeoutMs);
    return this.exchange(conn, req, 0, headTimeoutMs).catch((e: unknown) => (this.replayable(e, conn, req) ? this.requestSlow(req, headTimeoutMs) : Promise.reject(e as Error)));
  }

  private async requestSlow(req: ProxyRequest, headTimeoutMs: number): Promise<ProxyResponse> {
    let connectMs = 0;
    for (;;) {
      const waitedFrom = performance.now();
      const conn = await this.take(req.signal, req.upgrade !== undefined);
      connectMs += performance.now() - waitedFrom;
      try {
        return await this.exchange(conn, req, connectMs, headTimeoutMs);
      } catch (e) {
        if (this.replayable(e, conn, req)) continue;
        throw e;
      }
    }
  }

  /** `connectMs`: how long the request waited for `conn` (ResponseMeta.connectMs). */
  private exchange(conn: Conn, req: ProxyRequest, connectMs: number, headTimeoutMs: number): Promise<ProxyResponse> {
    return new Promise<ProxyResponse>((resolve, reject) => new Exchange(this, conn, req, connectMs, resolve, reject, headTimeoutMs).start());
  }

  /**
   * A kept-alive connection the endpoint closed just as it was reused: nothing of the request
   * was answered, and a request without a body can go again, once, on a new connection.
   */
  private replayable(e: unknown, conn: Conn, req: ProxyRequest): boolean {
    // An upgrade goes again only when it was refused unread: once its head went out, the endpoint may have acted on it.
    return e instanceof UpstreamResetError && ((conn.uses > 1 && req.upgrade === undefined) || e.refused) && !e.answered && req.body === null && !req.signal.aborted;
  }

  /** An idle connection that is still open, if the pool has one. */
  private takeIdle(): Conn | undefined {
    if (this.closed) return undefined;
    for (;;) {
      const conn = this.idle.pop();
      if (conn === undefined) return undefined;
      if (conn.socket.destroyed || conn.socket.readableEnded) {
        conn.socket.destroy();
        this.lost();
        continue;
      }
      conn.uses++;
      return conn;
    }
  }

  /**
   * A connection for a request: an idle one, a new one, or one that comes
   * free. `fresh`: a new one, for an upgrade, which keeps it.
   */
  private async take(signal: RequestSignal, fresh = false): Promise<Conn> {
    let deadline: number | undefined;
    for (;;) {
      if (this.closed) throw new Error(`the pool of ${this.authority} is closed (the endpoint left the config)`);
      const conn = fresh ? undefined : this.takeIdle();
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
      if (this.dial) return conn.attach(await this.dial(conn.onread));
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
      if (session === undefined) return session;
      if (session.usable && session.size < MAX_STREAMS) {
        this.mux = session;
        return session;
      }
      // Closed, or the endpoint said GOAWAY, or as many streams as the endpoint takes on one
      // connection (WebSockets, which live long, can add up to that): the next stream goes on a
      // new connection, and a full one ends after its last stream.
      if (session.usable) session.goAway();
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

  /** No stream is open, upgraded ones included: the mux connection ends (a new one is made when a request comes). */
  private endMuxIfUnused(): void {
    if (this.open === 0 && (this.mux === undefined || this.mux.size === 0)) this.endMux();
  }

  /** The mux connection takes no new stream and ends after the streams it has. */
  private endMux(): void {
    const pending = this.muxing;
    this.muxing = undefined;
    this.mux = undefined;
    void pending?.then(
      (s) => s?.goAway(),
      () => undefined,
    );
  }

  /** A connection that switched protocols (101) leaves the pool: it no longer counts against its limit. */
  detach(conn: Conn): void {
    void conn;
    this.lost();
  }

  /** A connection ended: a waiting request may open one. */
  private lost(): void {
    this.open--;
    this.waiting.wake();
  }

  release(conn: Conn, reusable: boolean): void {
    conn.user = undefined;
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
