// One request and its response on one pooled connection (h1/pool.ts): the
// request head is one string written with the body's first bytes
// (h1/body.ts writeBody), the response head is parsed in one pass
// (h1/head.ts), and the body is handed on in memory when it came with the
// head, else streamed as the socket delivers it. When both bodies are
// complete the connection goes back to the pool, reusable if both sides
// allow it; an error, an abort or a body cut short ends it.
//
// A malformed response never leaves the caller waiting: the response is
// handed on only once the bytes that came with its head have been read, so
// a body whose framing breaks in the same read (a whole bad response in one
// write) is an error before any of it goes on, and the caller gets a 502;
// one that breaks later fails the body the caller is reading, which ends
// the client's message cut short (its connection closed, its HTTP/2 stream
// reset). Either way the connection is closed, never pooled. A head with a
// line that ends in a bare LF is refused as soon as that LF arrives.
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { StreamResetError } from '../../net/mux.js';
import { BodyDecoder, writeBody } from './body.js';
import { HeadReader, HttpParseError, parseResponseHead, type ResponseHead } from './head.js';
import { bufferedBody, bufferOf, type Body, type ProxyRequest, type ProxyResponse, type ResponseMeta } from '../types.js';
import type { Conn, ConnUser } from './connection.js';
import type { H1Pool } from './pool.js';
import { Upgraded } from './upgraded.js';
import { ResponseHeadTimeoutError } from '../timeout.js';

/** Larger response heads are a 502. */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** How long a request body waits for the endpoint's 100 Continue before it goes anyway: curl's and Go's default. */
export const EXPECT_CONTINUE_MS = 1000;
/**
 * Interim responses handed to the client per request; an endpoint that sends
 * more has the rest read and dropped, so that one writing 1xx without end
 * cannot fill the client's connection (the client has no way to refuse them).
 */
export const MAX_INTERIM_RESPONSES = 16;

/** The endpoint closed or reset the connection before the response ended. */
export class UpstreamResetError extends Error {
  override name = 'UpstreamResetError';
  readonly code = 'ECONNRESET';
  /** Some of the response had arrived: the request was seen, so it is not replayed here. */
  answered = false;
  /** The endpoint's proxy refused the stream unread (it is going away): the request can go again. */
  refused = false;
}

const ignore = (): void => undefined;
const NO_BODY = { kind: 'none' } as const;

/** Whether buf[from..] holds a LF that no CR comes before (`before`: the byte before buf[from], -1 for none). */
function bareLf(buf: Buffer, from: number, before: number): boolean {
  for (let p = buf.indexOf(0x0a, from); p !== -1; p = buf.indexOf(0x0a, p + 1)) if ((p === from ? before : buf[p - 1]) !== 0x0d) return true;
  return false;
}

/** Whether a head's text (latin1) has a line that ends in a bare LF. */
function bareLfIn(text: string): boolean {
  for (let p = text.indexOf('\n'); p !== -1; p = text.indexOf('\n', p + 1)) if (text.charCodeAt(p - 1) !== 0x0d) return true;
  return false;
}

/**
 * RFC 9112 2.2 lets a recipient take a bare LF as a line's end; HAProxy and
 * nginx do, the mesh does not: a head whose lines two parsers split
 * differently is how responses are smuggled, and the proxy's own framing is
 * CRLF throughout.
 */
const bareLfError = (): HttpParseError => new HttpParseError(502, 'malformed response head: a line ends in a bare LF, not CRLF (RFC 9112 2.2)');

/** One request and its response on one connection. */
export class Exchange implements ConnUser {
  private readonly socket: Socket;
  private reader: HeadReader | undefined;
  private head: ResponseHead | undefined;
  /** The response, made from its head and not handed on yet: the rest of the read that brought the head comes first. */
  private answer: ProxyResponse | undefined;
  /** The response was handed on (resolved): from now on an error fails its body. */
  private handedOn = false;
  /** The last byte of the response head read so far, for a bare LF at the start of the next read. */
  private lastHeadByte = -1;
  private decoder: BodyDecoder | undefined;
  private body: Body | null = null;
  /** The response body while it streams in: what the decoder pushes into. */
  private stream: Readable | undefined;
  private requestSent: boolean;
  private responseDone = false;
  private finished = false;
  /** The request body is framed as its Content-Length says, else chunked. */
  private readonly chunked: boolean;
  /** Set while the head went with `expect: 100-continue` and the body waits for the endpoint's 100. */
  private continueTimer: NodeJS.Timeout | undefined;
  /** Interim (1xx) responses that came: the endpoint saw the request. */
  private interims = 0;
  private readonly onAbort = (): void => this.finish(this.req.signal.reason as Error);

  constructor(
    private readonly pool: H1Pool,
    private readonly conn: Conn,
    private readonly req: ProxyRequest,
    private readonly connectMs: number,
    private readonly resolve: (res: ProxyResponse) => void,
    private readonly reject: (e: Error) => void,
    /** How long the response head may take once the request has been sent whole (0: no bound; http/timeout.ts). */
    private readonly headTimeoutMs = 0,
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
    this.conn.user = this;
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
    if (req.upgrade !== undefined) out += `connection: upgrade\r\nupgrade: ${req.upgrade}\r\n`;
    // TE is hop-by-hop: whoever sends it names it in Connection (RFC 9110 10.1.4).
    if (req.headers.te !== undefined) out += 'connection: te\r\n';
    out += '\r\n';
    if (req.body === null) {
      socket.write(out, 'latin1');
      this.waitForHead();
      return;
    }
    if (req.headers.expect !== undefined && bufferOf(req.body) === undefined) {
      // The client waits for a 100 before it sends the body: the head goes alone, and the body
      // once the endpoint says 100 Continue, or after EXPECT_CONTINUE_MS without a word (RFC 9110
      // 10.1.1: a client may wait only so long), as curl and Go's transport do.
      socket.write(out, 'latin1');
      this.continueTimer = setTimeout(() => this.sendBody(undefined), EXPECT_CONTINUE_MS);
      return;
    }
    this.sendBody(out);
  }

  /** Writes the request body, after `head` when the head has not gone yet. */
  private sendBody(head: string | undefined): void {
    clearTimeout(this.continueTimer);
    this.continueTimer = undefined;
    if (this.finished || this.requestSent) return;
    writeBody(
      this.socket,
      head,
      this.req.body!,
      this.chunked,
      (e) => {
        if (e) {
          this.finish(e);
          return;
        }
        this.requestSent = true;
        this.waitForHead();
        this.maybeDone();
      },
      this.req.trailers,
    );
  }

  onData(chunk: Buffer): void {
    try {
      let data = chunk;
      let i = 0;
      while (i < data.length) {
        if (this.decoder === undefined) {
          const got = (this.reader ??= new HeadReader(MAX_RESPONSE_HEAD_BYTES, 502)).feed(data, i);
          if (!got) {
            // The head goes on in a later read: a line of it that ended in a bare LF is refused now (it would wait for a CRLF CRLF that may never come).
            if (bareLf(data, i, this.lastHeadByte)) throw bareLfError();
            this.lastHeadByte = data[data.length - 1]!;
            return;
          }
          data = got.buf;
          i = got.next;
          if (bareLfIn(got.text)) throw bareLfError();
          this.lastHeadByte = -1;
          const h = parseResponseHead(got.text, this.req.method);
          if (h.status === 101) {
            this.switched(h, data, i);
            return;
          }
          if (h.status < 200) {
            this.interim(h);
            continue;
          }
          if (this.continueTimer !== undefined) {
            // A final answer before the endpoint asked for the body: it is not sent, and the connection is out of step.
            clearTimeout(this.continueTimer);
            this.continueTimer = undefined;
            this.requestSent = true;
            h.keepAlive = false;
          }
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
    this.handOn();
  }

  /** The request has been sent whole: the response head timeout runs until the head comes. */
  private waitForHead(): void {
    if (this.headTimeoutMs > 0 && this.head === undefined && !this.finished) this.conn.armHeadTimer(this.headTimeoutMs);
  }

  onHeadTimeout(): void {
    if (this.head === undefined) this.finish(new ResponseHeadTimeoutError(this.headTimeoutMs));
  }

  /** Hands on the response made from the head, once the read that brought it has been gone through. */
  private handOn(): void {
    const res = this.answer;
    if (res === undefined) return;
    this.answer = undefined;
    this.handedOn = true;
    this.resolve(res);
  }

  /** An interim response (100 Continue, 103 Early Hints...): on to the client; a 100 also lets the body go. */
  private interim(h: ResponseHead): void {
    if (h.status === 100 && this.continueTimer !== undefined) this.sendBody(undefined);
    // The endpoint is at work on it: the wait for the final head starts again.
    else if (this.requestSent) this.waitForHead();
    if (++this.interims <= MAX_INTERIM_RESPONSES) this.req.informational?.(h.status, h.headers);
  }

  /**
   * 101 Switching Protocols: from the byte after its head the connection
   * carries the new protocol. It leaves the pool for the client's side to
   * join (h1/upgraded.ts), with what the endpoint sent after the head. A 101
   * to a request that asked for no upgrade is an error of the endpoint, and
   * its bytes are not read as the response (RFC 9110 15.2.2).
   */
  private switched(h: ResponseHead, data: Buffer, at: number): void {
    const { req } = this;
    if (req.upgrade === undefined) throw new HttpParseError(502, `${this.pool.authority} answered 101 Switching Protocols to a request that asked for no upgrade`);
    if (h.upgrade === undefined) throw new HttpParseError(502, `${this.pool.authority} answered 101 Switching Protocols without an Upgrade field`);
    this.head = h;
    this.finished = true;
    this.handedOn = true;
    this.conn.disarmHeadTimer();
    req.signal.removeEventListener('abort', this.onAbort);
    const upgraded = new Upgraded(this.conn, h.upgrade, data.subarray(at));
    this.pool.detach(this.conn);
    const meta: ResponseMeta = this.pool.ep.identity ? { peerIdentity: this.pool.ep.identity } : {};
    if (this.connectMs > 0) meta.connectMs = this.connectMs;
    this.resolve({ status: 101, headers: h.headers, body: null, meta, upgraded });
  }

  /** Makes the response, handed on at the end of this read; its head ended at data[at]. Returns where the unread bytes start. */
  private respond(h: ResponseHead, data: Buffer, at: number): number {
    this.head = h;
    this.conn.disarmHeadTimer();
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
    const res: ProxyResponse = { status: h.status, headers: h.headers, body: this.body, meta };
    if (framing.kind === 'chunked') {
      const decoder = this.decoder;
      res.trailers = () => decoder.trailers;
    }
    this.answer = res;
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

  onClose(): void {
    this.onEnd();
  }

  onError(e: Error): void {
    const err = new UpstreamResetError(`${this.pool.authority}: ${e.message}`);
    err.refused = e instanceof StreamResetError && e.refused;
    this.fail(err);
  }

  private fail(err: UpstreamResetError): void {
    if (this.reader?.started || this.head !== undefined || this.interims > 0) err.answered = true;
    this.finish(err);
  }

  /** Ends the exchange: the connection goes back to the pool or is closed. */
  private finish(e?: Error): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.continueTimer);
    this.conn.disarmHeadTimer();
    const { req } = this;
    req.signal.removeEventListener('abort', this.onAbort);
    if (e) {
      if (!this.handedOn) {
        // Nothing went on yet (a response whose body broke in the read that brought its head, too): the caller gets the error.
        this.answer = undefined;
        this.body?.destroy();
        this.reject(e);
      } else if (this.body && !this.stream?.readableEnded) this.body.destroy(e);
      req.body?.destroy();
      this.pool.release(this.conn, false);
      return;
    }
    this.handOn();
    this.pool.release(this.conn, this.head!.keepAlive);
  }
}
