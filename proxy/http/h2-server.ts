// Serves a Handler over HTTP/2 on sockets handed to it (h2c from the app on
// outbound, mesh TLS with ALPN tsmesh/h2 on inbound). Never listens.
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { Cancellation } from './cancel.js';
import { sendBody } from './pipe.js';
import { asGrpcAnswer, isGrpc } from './grpc.js';
import { sendTrailers, trailersOf } from './h2-trailers.js';
import type { Logger } from '../../lib/log.js';
import { bufferOf, copyEndToEnd, emptyHeaders, endToEndHeaders, localResponse, streamOf, type Handler, type ProxyRequest, type ProxyResponse } from './types.js';
import { HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_PROTOCOL, HTTP2_HEADER_STATUS, NGHTTP2_NO_ERROR, loadHttp2, loadedHttp2, type Http2 } from './h2-module.js';

export interface H2ServerOptions {
  log: Logger;
}

export interface ProxyH2Server {
  /** Serves HTTP/2 on `socket` with `handler`; the socket must be paused, its bytes read so far unshifted. */
  accept(socket: Duplex, handler: Handler): void;
  /** Sends GOAWAY on every session: streams in flight finish, no new ones start. */
  drain(): void;
}

/** Request headers without pseudo-headers; :authority becomes host. */
export function h2RequestHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = emptyHeaders();
  copyEndToEnd(headers, out, true);
  const authority = headers[HTTP2_HEADER_AUTHORITY];
  if (authority && !out.host) out.host = authority as string;
  return out;
}

export function createH2Server(opts: H2ServerOptions): ProxyH2Server {
  const sessions = new Set<ServerHttp2Session>();
  const handlers = new WeakMap<object, Handler>();
  // 'session' fires synchronously inside emit('connection'): hand the handler over there.
  let accepting: Handler | undefined;
  let server: Http2Server | undefined;
  const serverOf = (http2: Http2): Http2Server => {
    if (server) return server;
    server = http2.createServer({ maxSessionMemory: 16, settings: { maxConcurrentStreams: 1000, enableConnectProtocol: true } });
    server.on('session', (session) => {
      if (accepting) handlers.set(session, accepting);
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      session.on('error', () => session.destroy());
    });
    server.on('stream', (stream, headers) => void serve(stream, headers, stream.session ? handlers.get(stream.session) : undefined, opts));
    server.on('sessionError', () => undefined);
    return server;
  };
  const handOver = (http2: Http2, socket: Duplex, handler: Handler): void => {
    if (socket.destroyed) return;
    // HTTP/2 has no half-closed connection: a client's FIN means it is gone (it can send no
    // WINDOW_UPDATE, no RST_STREAM), and the listeners keep half-open sockets open, so the end
    // closes the socket and with it the session, whose streams then cancel their requests.
    socket.once('end', () => socket.destroy());
    accepting = handler;
    try {
      serverOf(http2).emit('connection', socket);
    } finally {
      accepting = undefined;
    }
  };
  return {
    accept(socket, handler) {
      const http2 = loadedHttp2();
      if (http2) return handOver(http2, socket, handler);
      // The first HTTP/2 connection loads node:http2; the socket stays paused, its bytes buffered, meanwhile.
      loadHttp2().then(
        (m) => handOver(m, socket, handler),
        (e: unknown) => {
          opts.log.error('cannot load node:http2', { error: (e as Error).message });
          socket.destroy();
        },
      );
    },
    drain() {
      for (const s of sessions) if (!s.closed) s.close();
    },
  };
}

/**
 * An interim response of the endpoint (103 Early Hints, any 1xx but 101,
 * which HTTP/2 does not have) to the client, before the final head; its
 * connection's fields are left out. One node refuses is dropped: it is only
 * a hint.
 */
function sendInterim(stream: ServerHttp2Stream, status: number, fields: ProxyResponse['headers']): void {
  if (status < 100 || status > 199 || status === 101 || stream.headersSent || stream.destroyed || stream.closed) return;
  const out = emptyHeaders<Record<string, string | string[]>>();
  out[HTTP2_HEADER_STATUS] = String(status);
  for (const [k, v] of Object.entries(endToEndHeaders(fields as IncomingHttpHeaders))) {
    if (v !== undefined && k.charCodeAt(0) !== 0x3a && k !== 'content-length') out[k] = v;
  }
  try {
    stream.additionalHeaders(out);
  } catch {
    // A field node:http2 will not send: the client goes without this hint.
  }
}

async function serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, handler: Handler | undefined, opts: H2ServerOptions): Promise<void> {
  // Plain listeners rather than once(): each event comes once per stream, and a once() wrapper per
  // listener per call was garbage the HTTP/2 path made for nothing.
  stream.on('error', () => stream.destroy());
  const controller = new Cancellation();
  // A close before the response head is the client going away, whatever its code: node's
  // stream.close() sends RST_STREAM(NO_ERROR), and the closed stream then reads as finished.
  // After the head, a reset mid-body stops sendBody, which lets go of the upstream's body.
  stream.on('close', () => {
    if (!stream.headersSent || stream.rstCode !== NGHTTP2_NO_ERROR) controller.abort(new Error(`the client reset the stream (code ${stream.rstCode})`));
  });
  const hasBody = !stream.readableEnded && !(stream as { endAfterHeaders?: boolean }).endAfterHeaders;
  const req: ProxyRequest = {
    protocol: 'http2',
    method: String(headers[HTTP2_HEADER_METHOD] ?? 'GET'),
    path: String(headers[HTTP2_HEADER_PATH] ?? '/'),
    headers: h2RequestHeaders(headers),
    body: hasBody ? stream : null,
    startedAt: performance.now(),
    signal: controller,
  };
  if (hasBody) req.trailers = trailersOf(stream);
  // An extended CONNECT (RFC 8441: a WebSocket over HTTP/2, which the server's SETTINGS allow) goes on as one:
  // its :protocol as the request's upgrade (never sent twice), then the stream's bytes both ways as the bodies.
  const protocol = headers[HTTP2_HEADER_PROTOCOL];
  if (req.method === 'CONNECT' && typeof protocol === 'string') req.upgrade = protocol;
  req.informational = (status, fields) => sendInterim(stream, status, fields);
  let response: ProxyResponse;
  try {
    response = handler ? await handler(req) : localResponse(503, 'no-route', 'tsmesh: no route for this connection');
  } catch (e) {
    opts.log.warn('request failed', { error: (e as Error).message });
    response = localResponse(502, 'proxy-error', `tsmesh: ${(e as Error).message}`);
  }
  // Answers made outside the stacks' gRPC layer (no route, an error) reach a gRPC caller as gRPC statuses too.
  if (isGrpc(req.headers)) response = asGrpcAnswer(response);
  if (stream.destroyed || stream.closed) {
    response.body?.destroy();
    return;
  }
  try {
    const out = emptyHeaders<Record<string, string | string[] | undefined>>();
    out[HTTP2_HEADER_STATUS] = String(response.status);
    copyEndToEnd(response.headers as IncomingHttpHeaders, out, true);
    // A response without a body ends with its head (gRPC's trailers-only answer keeps that shape);
    // one whose body may be followed by trailers holds its end for them.
    const trailers = response.body === null ? undefined : response.trailers;
    if (trailers) stream.on('wantTrailers', () => sendTrailers(stream, trailers()));
    stream.respond(out as Record<string, string | string[]>, { endStream: response.body === null, waitForTrailers: trailers !== undefined });
    // A body whole in memory (a local answer, one tsmesh/h2f brought with its head) is written at once.
    const bytes = bufferOf(response.body);
    if (bytes) stream.end(bytes);
    else if (response.body) await sendBody(streamOf(response.body), stream);
  } catch (e) {
    opts.log.debug('response stream ended early', { error: (e as Error).message });
    stream.destroy();
  }
}
