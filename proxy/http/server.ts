// Serves a Handler over HTTP/1.1 on sockets handed to it (it never listens):
// outbound gets the app's plain connections, inbound the terminated mTLS
// ones. The framing is the proxy's own (h1/head.ts, h1/body.ts), on the raw
// socket: no IncomingMessage or ServerResponse per request, one pass over
// the head that also drops hop-by-hop fields, and one abort signal per
// connection (an HTTP/1.1 connection carries one request at a time, and a
// client that goes away ends the connection). Requests are answered in order;
// a pipelined request waits, unread, until the response before it is sent.
// Errors become 4xx/5xx responses, never a crash.
//
// Interim responses of the endpoint (103 Early Hints, any 1xx) reach the
// client before the final one (ProxyRequest.informational). Expect:
// 100-continue goes on toward the app, and the client gets one 100: the
// app's, or the proxy's own once the body is wanted anyway (h1/exchange.ts
// stops waiting for the app's after a second). An Upgrade (WebSocket) goes
// through the handler like any request; a 101 answer joins the client's
// connection to the endpoint's (net/tunnel.ts) until either closes.
import { Readable } from 'node:stream';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../lib/log.js';
import { copiedReads, readInto } from '../net/read-into.js';
import { Cancellation } from './cancel.js';
import { BodyDecoder, writeBody } from './h1/body.js';
import { HeadReader, HttpParseError, parseRequestHead, RequestLineScanner, type RequestHead } from './h1/head.js';
import type { TunnelSide, Tunnel } from '../net/tunnel.js';
import { bufferedBody, HOP_BY_HOP, localResponse, type Body, type Handler, type ProxyRequest, type ProxyResponse, type UpgradedConnection } from './types.js';
import { ERROR_HEADER, type LocalError } from '../../contract/vocabulary.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { STATUS_CODES } = process.getBuiltinModule('node:http');

export interface HttpServerOptions {
  /** The handler for requests on `socket`; looked up once per request. */
  handlerFor(socket: Duplex): Handler | undefined;
  log: Logger;
  /** A request head must arrive within this from its first byte (slowloris); default 10 s. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections close after this; default 60 s. */
  keepAliveTimeoutMs?: number;
  /** A connection that switched protocols (101) closes when no byte moves either way for this long, as TCP does; default 1 h. */
  tunnelIdleTimeoutMs?: number;
  /**
   * A request body that brings less than MIN_BODY_PROGRESS bytes in this
   * long is abandoned: one that stalls, and one that trickles (a byte a
   * second never leaves the connection idle, and would hold it for ever).
   * The upstream request is cancelled and the client gets 408, or the
   * connection is closed if its response has begun. Time the proxy itself
   * holds the client back (the upstream reads slower than the client sends)
   * does not count. TSMESH_REQUEST_BODY_TIMEOUT; default 60 s.
   */
  bodyIdleTimeoutMs?: number;
}

/** Larger request heads get 431. */
export const MAX_HEADER_BYTES = 64 * 1024;

/**
 * What a request body must bring within each body timeout to keep its
 * connection: any real upload does, a trickle does not. Counted on the
 * wire (chunk framing included), and only while the proxy is reading.
 */
export const MIN_BODY_PROGRESS = 1024;

export interface ProxyHttpServer {
  /** Serves HTTP/1.1 on a connected socket (bytes already read were unshifted back onto it). */
  accept(socket: Duplex): void;
  /** From now on every response carries `connection: close`; idle keep-alive connections close now. */
  drain(): void;
}

export function createHttpServer(opts: HttpServerOptions): ProxyHttpServer {
  const shared: Shared = {
    opts,
    headersTimeoutMs: opts.headersTimeoutMs ?? 10_000,
    keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
    tunnelIdleTimeoutMs: opts.tunnelIdleTimeoutMs ?? 3600_000,
    bodyIdleTimeoutMs: opts.bodyIdleTimeoutMs ?? 60_000,
    draining: false,
    connections: new Set(),
  };
  return {
    accept(socket) {
      const c = new ServerConnection(socket, shared);
      shared.connections.add(c);
      socket.once('close', () => shared.connections.delete(c));
    },
    drain() {
      shared.draining = true;
      for (const c of shared.connections) c.drainIfIdle();
    },
  };
}

interface Shared {
  opts: HttpServerOptions;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  tunnelIdleTimeoutMs: number;
  bodyIdleTimeoutMs: number;
  draining: boolean;
  connections: Set<ServerConnection>;
}

const enum Phase {
  /** Waiting for (or reading) a request head. */
  Head,
  /** Reading the request's body. */
  Body,
  /** The request is read; its response is not sent yet. */
  Respond,
  /** The connection switched protocols (101): bytes go both ways through a tunnel. */
  Tunnel,
  Closed,
}

type Wait = 'head' | 'idle' | 'body';

const ignore = (): void => undefined;
function unrefTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/** The error for a head whose bytes cannot be a request head: why, and how it begins. */
function notARequest(reason: string, head: Buffer): HttpParseError {
  return new HttpParseError(400, `${reason}; the head begins ${JSON.stringify(head.toString('latin1', 0, Math.min(head.length, 40)))}`);
}

/** How long a client whose request was refused has to read the answer and close. */
const REJECT_LINGER_MS = 1000;

/** `text` with every byte outside printable ASCII as \xNN: a refusal quotes what the client sent. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

class ServerConnection {
  /** Reads of a socket that can read into a buffer (net/read-into.ts). */
  private readonly reads = copiedReads((d) => {
    this.onData(d);
    return true;
  });
  private phase = Phase.Head;
  private readonly reader = new HeadReader(MAX_HEADER_BYTES, 431);
  private decoder: BodyDecoder | undefined;
  private body: Body | undefined;
  /** The request body while it streams in (Phase.Body): what the decoder pushes into. */
  private stream: Readable | undefined;
  /** Bytes of the next (pipelined) request, read while a response was pending. */
  private held: Buffer | undefined;
  /**
   * Which wait the connection is in, and so which of its three timers may
   * act: a request head begun (408 at the headers timeout; a fresh connection
   * that sends nothing is closed then too), idle between requests (closed at
   * the keep-alive timeout), or a request body (408 when less than
   * MIN_BODY_PROGRESS arrives in the body timeout, while the proxy is not
   * holding the client back).
   * Each timer is made once and refreshed as the wait begins; one that fires
   * for a wait already over does nothing. No timer is made or cleared per
   * request.
   */
  private waiting: Wait | undefined;
  private headTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private bodyTimer: NodeJS.Timeout | undefined;
  /** Reads the request line of a head that has not come whole, to refuse bytes that cannot begin one. */
  private line: RequestLineScanner | undefined;
  /** Request body bytes since the body timer last started (bodyProgress). */
  private bodyBytes = 0;
  /** The response's head is written: a timeout can no longer answer 408. */
  private responding = false;
  private controller: Cancellation | undefined;
  private keepAlive = true;
  /** The request's client waits for a 100 Continue before it sends the body (Expect: 100-continue). */
  private expecting = false;
  /** A 100 Continue went to the client for this request: there is never a second. */
  private continued = false;
  /** The request is HTTP/1.0, whose clients know no 1xx (RFC 9110 15.2). */
  private http10 = false;
  /** Once the connection switched protocols (101): the tunnel to the endpoint's connection. */
  private tunnel: Tunnel | undefined;
  /** Hands the endpoint's interim responses to the client (ProxyRequest.informational); one for the connection's requests, which come one at a time. */
  private readonly onInformational = (status: number, headers: ProxyResponse['headers']): void => this.informational(status, headers);

  constructor(
    private readonly socket: Duplex,
    private readonly shared: Shared,
  ) {
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.onClose());
    socket.once('end', () => {
      if (this.phase === Phase.Tunnel) {
        this.tunnel!.a.end();
        return;
      }
      // The client closed its side. A request in flight is abandoned, as hyper (Linkerd), Envoy and
      // nginx treat an EOF from the client: a caller that gave up closes its connection, and a proxy
      // that kept waiting for the answer would keep the upstream's connection and worker busy for it.
      if (this.phase === Phase.Head) socket.destroy();
      else if (this.phase === Phase.Body) this.fail(new Error('the client closed the connection before the request body ended'));
      else if (!this.responding) this.fail(new Error('the client closed the connection before its response'));
      else this.keepAlive = false;
    });
    this.waitFor('head');
    if (readInto(socket, this.reads)) {
      // Bytes read before (a sniffed head, unshifted) are still in the stream's buffer.
      for (let b = socket.read() as Buffer | null; b !== null; b = socket.read() as Buffer | null) this.onData(b);
    } else socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  drainIfIdle(): void {
    if (this.phase === Phase.Head && !this.reader.started) this.socket.end();
  }

  private get signal(): Cancellation {
    return (this.controller ??= new Cancellation());
  }

  private waitFor(wait: Wait): void {
    this.waiting = wait;
    if (wait === 'head') (this.headTimer ??= unrefTimer(() => this.timedOut('head'), this.shared.headersTimeoutMs)).refresh();
    else if (wait === 'idle') (this.idleTimer ??= unrefTimer(() => this.timedOut('idle'), this.shared.keepAliveTimeoutMs)).refresh();
    else {
      this.bodyBytes = 0;
      (this.bodyTimer ??= unrefTimer(() => this.timedOut('body'), this.shared.bodyIdleTimeoutMs)).refresh();
    }
  }

  private timedOut(wait: Wait): void {
    if (this.waiting !== wait) return;
    if (wait === 'body') {
      if (this.phase !== Phase.Body) return;
      const e = new Error(
        `the request body brought ${this.bodyBytes} bytes in ${this.shared.bodyIdleTimeoutMs} ms, less than the ${MIN_BODY_PROGRESS} it must bring in that time (stalled or trickling); send the body as it is ready`,
      );
      this.shared.opts.log.debug('request body stalled', { error: e.message });
      this.abandonBody(e, 408);
      return;
    }
    if (this.phase !== Phase.Head) return;
    if (this.reader.started) this.reject(408, `the request head did not arrive whole within ${this.shared.headersTimeoutMs} ms; send a request's head at once`);
    else this.socket.destroy();
  }

  private stopTimers(): void {
    this.waiting = undefined;
    clearTimeout(this.headTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.bodyTimer);
  }

  private onData(chunk: Buffer): void {
    if (this.phase === Phase.Tunnel) {
      this.tunnel!.a.data(chunk);
      return;
    }
    if (this.phase === Phase.Closed) return;
    if (this.phase === Phase.Respond) {
      this.hold(chunk);
      return;
    }
    try {
      this.consume(chunk, 0);
    } catch (e) {
      if (e instanceof HttpParseError) {
        this.shared.opts.log.debug('bad request', { error: e.message });
        if (this.phase === Phase.Head) this.reject(e.status, e.message);
        else this.abandonBody(e, e.status);
      } else throw e;
    }
  }

  /**
   * `n` bytes of the request body arrived: the body timer starts again once
   * MIN_BODY_PROGRESS of them have come since it last did. Not while the
   * proxy holds the client back (readBody starts it again then).
   */
  private bodyProgress(n: number): void {
    if (this.waiting !== 'body') return;
    this.bodyBytes += n;
    if (this.bodyBytes >= MIN_BODY_PROGRESS) this.waitFor('body');
  }

  /** The body's reader is full: stop reading, and stop counting the client's silence, until it wants more. */
  private holdBody(): void {
    this.socket.pause();
    if (this.waiting === 'body') this.waiting = undefined;
  }

  private readBody(): void {
    // The body is wanted (by the endpoint after its 100, after the wait for one, or by a layer that buffers it): the client may send it.
    if (this.expecting) this.sendContinue();
    this.socket.resume();
    // A body held back starts a new period; one being read keeps counting (its reader asks after every piece).
    if (this.phase === Phase.Body && this.waiting !== 'body') this.waitFor('body');
  }

  private hold(chunk: Buffer): void {
    this.held = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    this.socket.pause();
  }

  private consume(buf: Buffer, from: number): void {
    let data = buf;
    let i = from;
    while (i < data.length) {
      if (this.phase === Phase.Head) {
        if (!this.reader.started) {
          // RFC 9112 2.2: empty lines before a request line are ignored.
          while (i < data.length && (data[i] === 0x0d || data[i] === 0x0a)) i++;
          if (i === data.length) return;
        }
        const began = !this.reader.started;
        const got = this.reader.feed(data, i);
        if (!got) {
          // A head that did not come whole: it has the headers timeout to finish, and is refused as
          // soon as its bytes cannot be a request head (a TLS hello, binary bytes, "G@T /", a bare LF).
          if (began) {
            this.waitFor('head');
            this.line = new RequestLineScanner(true);
          }
          if (this.line?.scan(data, i, data.length) === 'not-request') throw notARequest(this.line.reason, this.reader.partial ?? data.subarray(i));
          return;
        }
        this.line = undefined;
        data = got.buf;
        i = got.next;
        i = this.start(parseRequestHead(got.text), data, i);
      } else if (this.phase === Phase.Body) {
        const from = i;
        i = this.decoder!.feed(data, i, (d) => {
          if (!this.stream!.push(d)) this.holdBody();
        });
        this.bodyProgress(i - from);
        if (this.decoder!.done) {
          this.stream!.push(null);
          this.phase = Phase.Respond;
          if (this.waiting === 'body') this.waiting = undefined;
        }
      } else {
        if (this.phase === Phase.Respond && i < data.length) this.hold(data.subarray(i));
        return;
      }
    }
  }

  /** Starts a request whose head ended at data[at]; returns where its body's unread bytes start. */
  private start(head: RequestHead, data: Buffer, at: number): number {
    this.waiting = undefined;
    this.keepAlive = head.keepAlive && !this.shared.draining;
    this.expecting = false;
    this.continued = false;
    this.http10 = head.minor === 0;
    const { framing } = head;
    let next = at;
    if (framing.kind === 'length' && data.length - at >= framing.length) {
      // The whole body came with the head: it is handed on as bytes in memory, not streamed.
      next = at + framing.length;
      this.body = bufferedBody(data.subarray(at, next));
      this.stream = undefined;
      this.phase = Phase.Respond;
    } else if (framing.kind !== 'none') {
      this.decoder = new BodyDecoder(head.framing, 400);
      const stream = new Readable({ read: () => this.readBody() });
      // Its readers come and go (a retry, a forward that gave up); a client that leaves must not be an uncaught error.
      stream.on('error', ignore);
      this.body = this.stream = stream;
      this.phase = Phase.Body;
      this.waitFor('body');
      // Not answered here: the expectation goes on toward the app, whose 100 comes back (RFC 9110 10.1.1).
      this.expecting = head.expectContinue;
    } else {
      this.body = this.stream = undefined;
      this.phase = Phase.Respond;
    }
    const req: ProxyRequest = {
      protocol: 'http1',
      method: head.method,
      path: head.target,
      headers: head.headers,
      body: this.body ?? null,
      startedAt: performance.now(),
      signal: this.signal,
      informational: this.onInformational,
    };
    if (framing.kind === 'chunked') {
      const decoder = this.decoder!;
      req.trailers = () => decoder.trailers;
    }
    const upgrade = upgradeOf(head);
    if (upgrade !== undefined) req.upgrade = upgrade;
    void this.respond(req, head);
    return next;
  }

  private async respond(req: ProxyRequest, head: RequestHead): Promise<void> {
    const { opts } = this.shared;
    let res: ProxyResponse;
    try {
      const handler = opts.handlerFor(this.socket);
      res = handler ? await handler(req) : localResponse(503, 'no-route', 'tsmesh: no route for this connection');
    } catch (e) {
      if (!this.signal.aborted) opts.log.warn('request failed', { error: (e as Error).message });
      res = localResponse(502, 'proxy-error', `tsmesh: ${(e as Error).message}`);
    }
    if (this.phase === Phase.Closed) {
      res.body?.destroy();
      res.upgraded?.destroy();
      return;
    }
    if (res.upgraded !== undefined) {
      if (req.upgrade !== undefined && res.status === 101) {
        this.switchProtocols(res, res.upgraded);
        return;
      }
      res.upgraded.destroy();
      res = localResponse(502, 'proxy-error', 'tsmesh: a switch of protocols the request did not ask for');
    }
    // A body the handler did not read to its end leaves the connection unusable for the next request.
    if (this.phase === Phase.Body) this.keepAlive = false;
    if (this.shared.draining) this.keepAlive = false;
    this.send(res, head);
  }

  /** A 100 Continue to the client, once per request, while its body is still to come. */
  private sendContinue(): void {
    this.expecting = false;
    if (this.continued || this.responding || this.http10) return;
    this.continued = true;
    this.socket.write(CONTINUE, 'latin1');
    // The client waited for this to send its body: the body's time starts now.
    if (this.phase === Phase.Body && this.waiting === 'body') this.waitFor('body');
  }

  /** An interim response of the endpoint (ProxyRequest.informational), before the final one. */
  private informational(status: number, headers: ProxyResponse['headers']): void {
    if (this.responding || (this.phase !== Phase.Body && this.phase !== Phase.Respond) || this.http10) return;
    if (status === 100) {
      this.sendContinue();
      return;
    }
    let out = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined || HOP_BY_HOP.has(name) || name === 'content-length' || name.charCodeAt(0) === 0x3a) continue;
      if (typeof v === 'string') out += `${name}: ${v}\r\n`;
      else for (const one of v) out += `${name}: ${one}\r\n`;
    }
    this.socket.write(`${out}\r\n`, 'latin1');
  }

  /**
   * 101 Switching Protocols: the answer goes to the client, then its
   * connection is joined to the endpoint's (net/tunnel.ts) until either
   * closes; bytes the client sent after its request, held unread, go first.
   */
  private switchProtocols(res: ProxyResponse, upgraded: UpgradedConnection): void {
    const socket = this.socket;
    this.responding = true;
    this.phase = Phase.Tunnel;
    this.stopTimers();
    let out = 'HTTP/1.1 101 Switching Protocols\r\n';
    for (const name in res.headers) {
      const v = res.headers[name];
      if (v === undefined || HOP_BY_HOP.has(name) || name === 'content-length' || name.charCodeAt(0) === 0x3a) continue;
      if (typeof v === 'string') out += `${name}: ${v}\r\n`;
      else for (const one of v) out += `${name}: ${one}\r\n`;
    }
    socket.write(`${out}connection: upgrade\r\nupgrade: ${upgraded.protocol}\r\n\r\n`, 'latin1');
    // Either side may end its bytes first; the other way stays open.
    socket.allowHalfOpen = true;
    const tunnel = (this.tunnel = upgraded.join(socket as unknown as TunnelSide, this.shared.tunnelIdleTimeoutMs));
    const held = this.held;
    this.held = undefined;
    if (held) tunnel.a.data(held);
    socket.resume();
  }

  /** Writes the response, then reads the next request (or closes). */
  private send(res: ProxyResponse, head: RequestHead): void {
    const socket = this.socket;
    this.responding = true;
    const noBody = head.method === 'HEAD' || res.status === 204 || res.status === 304 || res.status < 200;
    let out = `HTTP/1.1 ${res.status} ${STATUS_CODES[res.status] ?? 'Unknown'}\r\n`;
    let length: string | undefined;
    for (const name in res.headers) {
      const v = res.headers[name];
      if (v === undefined || HOP_BY_HOP.has(name) || name.charCodeAt(0) === 0x3a) continue;
      if (name === 'content-length') {
        length = String(v);
        if (noBody && head.method !== 'HEAD') continue;
      }
      if (typeof v === 'string') out += `${name}: ${v}\r\n`;
      else for (const one of v) out += `${name}: ${one}\r\n`;
    }
    const body = noBody ? null : res.body;
    if (noBody) res.body?.destroy();
    let chunked = false;
    if (body === null) {
      if (length === undefined && !noBody) out += 'content-length: 0\r\n';
    } else if (length === undefined) {
      if (head.minor === 1) {
        chunked = true;
        out += 'transfer-encoding: chunked\r\n';
      } else this.keepAlive = false; // HTTP/1.0: the body ends with the connection.
    }
    if (!this.keepAlive) out += 'connection: close\r\n';
    out += '\r\n';
    if (body === null) {
      socket.write(out, 'latin1');
      this.next();
      return;
    }
    writeBody(
      socket,
      out,
      body,
      chunked,
      (e) => {
        if (!e) {
          this.next();
          return;
        }
        // The client or the upstream went away mid-body: nothing more to send. A TCP reset, not a FIN:
        // a client that reads the body to the connection's end (HTTP/1.0) would take a FIN for its end.
        // (Only a plain TCP socket can reset; a TLS socket ends without close_notify, a mux stream is reset.)
        this.shared.opts.log.debug('response stream ended early', { error: e.message });
        try {
          (socket as Socket).resetAndDestroy();
        } catch {
          socket.destroy();
        }
      },
      res.trailers,
    );
  }

  /** The response is sent: read the next request, or close. */
  private next(): void {
    this.responding = false;
    this.body = this.stream = undefined;
    this.decoder = undefined;
    if (!this.keepAlive) {
      this.phase = Phase.Closed;
      this.socket.end();
      return;
    }
    this.phase = Phase.Head;
    this.waitFor('idle');
    const held = this.held;
    this.held = undefined;
    if (held) this.onData(held);
    if (this.phase === Phase.Head || this.phase === Phase.Body) this.socket.resume();
  }

  /**
   * Answers a request that could not be read, saying why (`detail`), and
   * closes: the client has REJECT_LINGER_MS to read the answer and close
   * its side (closing with its bytes unread would reset the connection
   * before the answer is read), and is closed then if it has not.
   */
  private reject(status: number, detail: string): void {
    this.phase = Phase.Closed;
    this.stopTimers();
    const text = `tsmesh: ${printable(detail)}\n`;
    this.socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\ncontent-type: text/plain; charset=utf-8\r\n${ERROR_HEADER}: ${'bad-request' satisfies LocalError}\r\nconnection: close\r\ncontent-length: ${text.length}\r\n\r\n${text}`,
      'latin1',
    );
    unrefTimer(() => this.socket.destroy(), REJECT_LINGER_MS);
    this.socket.resume();
  }

  /**
   * The request body cannot go on (malformed, or stalled): the request is
   * abandoned, the app's request cancelled, and the client gets `status`
   * with the reason if its response has not begun; otherwise the connection
   * just closes, the only way left to tell it.
   */
  private abandonBody(e: Error, status: number): void {
    this.body?.destroy(e);
    this.controller?.abort(e);
    if (!this.responding) {
      this.reject(status, e.message);
      return;
    }
    this.phase = Phase.Closed;
    this.stopTimers();
    this.socket.destroy();
  }

  /** The client went away mid-request: the request is abandoned. */
  private fail(e: Error): void {
    this.body?.destroy(e);
    this.controller?.abort(e);
    this.phase = Phase.Closed;
    this.socket.destroy();
  }

  private onClose(): void {
    this.stopTimers();
    if (this.phase === Phase.Tunnel) {
      this.phase = Phase.Closed;
      this.tunnel!.a.close();
      return;
    }
    const inFlight = this.phase === Phase.Body || this.phase === Phase.Respond;
    this.phase = Phase.Closed;
    if (inFlight) {
      const e = new Error('the client closed the connection');
      if (this.body && !this.stream?.readableEnded) this.body.destroy(e);
      this.controller?.abort(e);
    }
  }
}

/**
 * The protocols a request asks to switch to, as it goes on toward the app;
 * undefined when it is served as it is. An h2c upgrade is declined by
 * answering in HTTP/1.1, as RFC 9110 7.8 lets a server do (the mesh carries
 * HTTP/2 with prior knowledge); so is one in HTTP/1.0, which RFC 9110 has a
 * server ignore, and one with a body, which would leave unclear where the
 * request ends and the new protocol begins.
 */
function upgradeOf(head: RequestHead): string | undefined {
  if (head.upgrade === undefined || head.minor === 0 || head.framing.kind !== 'none') return undefined;
  const wanted = head.upgrade
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && t.toLowerCase() !== 'h2c');
  return wanted.length === 0 ? undefined : wanted.join(', ');
}
