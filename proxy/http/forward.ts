// The innermost HTTP handler: sends the request to one endpoint over a pooled
// HTTP/1.1 connection (mTLS to meshed endpoints) and returns its response.
// The framing is the proxy's own (h1/head.ts, h1/body.ts): the request head
// is one string written with the body's first bytes, the response head is
// parsed in one pass, and the body streams as the socket delivers it. A
// connection goes back to its pool once both bodies are complete and both
// sides allow it; anything else (an error, an abort, `connection: close`, a
// body cut short) ends it.
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { ResolvedEndpoint } from '../config/table.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { MESH_ALPN } from '../tls/alpn.js';
import { connectEndpoint } from '../upstream.js';
import { BodyDecoder, frame, lastChunk } from './h1/body.js';
import { HeadReader, HttpParseError, parseResponseHead, type ResponseHead } from './h1/head.js';
import type { ProxyRequest, ProxyResponse } from './types.js';

export type EndpointAddress = Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>;

/** Larger response heads are a 502. */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** An idle pooled connection is closed after this. */
const IDLE_MS = 30_000;
/** At most this many connections per endpoint; requests beyond wait for one. */
const MAX_CONNECTIONS = 256;

/** The endpoint closed or reset the connection before the response ended. */
export class UpstreamResetError extends Error {
  override name = 'UpstreamResetError';
  readonly code = 'ECONNRESET';
}

/** Connection pools per endpoint (address, port and expected identity). */
export class EndpointPools {
  private readonly pools = new Map<string, H1Pool>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly meshTls: MeshTls | undefined) {}

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  pool(ep: EndpointAddress): H1Pool {
    const key = EndpointPools.key(ep);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new H1Pool(ep, this.meshTls);
      this.pools.set(key, pool);
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

interface Conn {
  socket: Socket;
  idleSince: number;
  /** Requests it has carried. */
  uses: number;
}

const ignore = (): void => undefined;

class H1Pool {
  private readonly idle: Conn[] = [];
  private open = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;
  private readonly authority: string;

  constructor(
    private readonly ep: EndpointAddress,
    private readonly meshTls: MeshTls | undefined,
  ) {
    this.authority = `${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`;
  }

  async request(req: ProxyRequest): Promise<ProxyResponse> {
    for (;;) {
      const conn = await this.take(req.signal);
      try {
        return await this.exchange(conn, req);
      } catch (e) {
        // A kept-alive connection the endpoint closed just as it was reused: nothing of the request
        // was answered, and a request without a body can go again, once, on a new connection.
        if (e instanceof UpstreamResetError && conn.uses > 1 && !(e as { answered?: boolean }).answered && req.body === null && !req.signal.aborted) continue;
        throw e;
      }
    }
  }

  private async take(signal: AbortSignal): Promise<Conn> {
    for (;;) {
      if (this.closed) throw new Error(`the pool of ${this.authority} is closed (the endpoint left the config)`);
      const conn = this.idle.pop();
      if (conn) {
        if (conn.socket.destroyed || conn.socket.readableEnded) {
          this.lost();
          continue;
        }
        conn.uses++;
        return conn;
      }
      if (this.open < MAX_CONNECTIONS) break;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      if (signal.aborted) throw signal.reason as Error;
    }
    this.open++;
    try {
      const socket = (await connectEndpoint(this.meshTls, this.ep, MESH_ALPN.http1)) as Socket;
      socket.setNoDelay(true);
      // Between requests nothing else listens: an idle connection the endpoint resets must not throw.
      socket.on('error', ignore);
      return { socket, idleSince: 0, uses: 1 };
    } catch (e) {
      this.lost();
      throw e;
    }
  }

  /** A connection ended: a waiting request may open one. */
  private lost(): void {
    this.open--;
    this.waiting.shift()?.();
  }

  private release(conn: Conn, reusable: boolean): void {
    if (!reusable || this.closed || conn.socket.destroyed) {
      conn.socket.destroy();
      this.lost();
      return;
    }
    conn.idleSince = performance.now();
    const wake = this.waiting.shift();
    this.idle.push(conn);
    wake?.();
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
  }

  close(): Promise<void> {
    this.closed = true;
    for (const c of this.idle.splice(0)) {
      c.socket.destroy();
      this.open--;
    }
    for (const w of this.waiting.splice(0)) w();
    return Promise.resolve();
  }

  private exchange(conn: Conn, req: ProxyRequest): Promise<ProxyResponse> {
    const { socket } = conn;
    return new Promise<ProxyResponse>((resolve, reject) => {
      const reader = new HeadReader(MAX_RESPONSE_HEAD_BYTES, 502);
      let head: ResponseHead | undefined;
      let decoder: BodyDecoder | undefined;
      let body: Readable | null = null;
      let requestSent = req.body === null;
      let responseDone = false;
      let finished = false;

      const cleanup = (): void => {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.off('error', onError);
        socket.off('drain', onDrain);
        req.signal.removeEventListener('abort', onAbort);
        if (req.body) {
          req.body.off('data', onBodyData);
          req.body.off('end', onBodyEnd);
          req.body.off('error', onBodyError);
        }
      };
      /** Ends the exchange: the connection goes back to the pool or is closed. */
      const finish = (e?: Error): void => {
        if (finished) return;
        finished = true;
        cleanup();
        if (e) {
          if (head === undefined) reject(e);
          else if (body && !body.readableEnded) body.destroy(e);
          req.body?.destroy();
          this.release(conn, false);
          return;
        }
        this.release(conn, head!.keepAlive);
      };
      const maybeDone = (): void => {
        if (responseDone && requestSent) finish();
      };

      const onData = (chunk: Buffer): void => {
        try {
          let data = chunk;
          let i = 0;
          while (i < data.length) {
            if (head === undefined || decoder === undefined) {
              const got = reader.feed(data, i);
              if (!got) return;
              data = got.buf;
              i = got.next;
              const h = parseResponseHead(got.text, req.method);
              // 1xx (100 Continue, 103 Early Hints) precede the response; the proxy answers Expect itself.
              if (h.status < 200) continue;
              head = h;
              decoder = new BodyDecoder(h.framing, 502);
              if (!decoder.done) {
                const b = (body = new Readable({ read: () => socket.resume() }));
                // Whoever reads it may have stopped listening when the endpoint goes away.
                b.on('error', ignore);
                // The reader let go of the body (its client left): the connection cannot be reused.
                b.once('close', () => {
                  if (!b.readableEnded) finish(new UpstreamResetError('the response body was abandoned'));
                });
              }
              resolve({ status: h.status, headers: h.headers, body, meta: this.ep.identity ? { peerIdentity: this.ep.identity } : {} });
              if (decoder.done) {
                responseDone = true;
                // The response came before the request body was sent: the connection cannot be reused.
                if (!requestSent) head.keepAlive = false;
                maybeDone();
                if (i < data.length) finish(new HttpParseError(502, 'the endpoint sent bytes after its response'));
                return;
              }
            } else {
              i = decoder.feed(data, i, (d) => {
                if (!body!.push(d)) socket.pause();
              });
              if (decoder.done) {
                body!.push(null);
                responseDone = true;
                if (!requestSent) head.keepAlive = false;
                if (i < data.length) {
                  head.keepAlive = false;
                }
                maybeDone();
                return;
              }
            }
          }
        } catch (e) {
          finish(e as Error);
        }
      };
      const onEnd = (): void => {
        if (finished || responseDone) return;
        if (decoder?.untilClose) {
          body!.push(null);
          responseDone = true;
          head!.keepAlive = false;
          requestSent = true;
          maybeDone();
          return;
        }
        const err = new UpstreamResetError(
          head === undefined ? `${this.authority} closed the connection before it answered` : `${this.authority} closed the connection in the middle of its response`,
        );
        if (reader.started || head !== undefined) (err as { answered?: boolean }).answered = true;
        finish(err);
      };
      const onError = (e: Error): void => {
        const err = new UpstreamResetError(`${this.authority}: ${e.message}`);
        if (reader.started || head !== undefined) (err as { answered?: boolean }).answered = true;
        finish(err);
      };
      const onAbort = (): void => finish(req.signal.reason as Error);

      // The request body, framed as its Content-Length says, else chunked.
      const chunked = req.body !== null && req.headers['content-length'] === undefined;
      // The head goes out with the body's first bytes, in one write.
      let pendingHead: string | undefined;
      const onBodyData = (d: Buffer): void => {
        const ok = socket.write(frame(pendingHead, d, chunked));
        pendingHead = undefined;
        if (!ok) req.body!.pause();
      };
      const onBodyEnd = (): void => {
        if (chunked) socket.write(lastChunk(pendingHead), 'latin1');
        else if (pendingHead !== undefined) socket.write(pendingHead, 'latin1');
        pendingHead = undefined;
        requestSent = true;
        maybeDone();
      };
      const onBodyError = (e: Error): void => finish(e);
      const onDrain = (): void => {
        req.body?.resume();
      };

      if (req.signal.aborted) {
        finish(req.signal.reason as Error);
        return;
      }
      req.signal.addEventListener('abort', onAbort, { once: true });
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.on('error', onError);
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
      if (!host) out += `host: ${this.authority}\r\n`;
      if (chunked) out += 'transfer-encoding: chunked\r\n';
      out += '\r\n';
      if (req.body === null) {
        socket.write(out, 'latin1');
        return;
      }
      pendingHead = out;
      socket.on('drain', onDrain);
      req.body.on('data', onBodyData);
      req.body.once('end', onBodyEnd);
      req.body.once('error', onBodyError);
    });
  }
}
