// Serves a Handler over node:http on sockets handed to it (it never listens):
// outbound gets the app's plain connections, inbound the terminated mTLS ones.
// Errors become 502/503/504 responses, never a crash.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { sendBody } from './pipe.js';
import type { Logger } from '../../lib/log.js';
import { endToEndHeaders, localResponse, type Handler, type ProxyRequest, type ProxyResponse } from './types.js';

export interface HttpServerOptions {
  /** The handler for requests on `socket`; looked up once per connection. */
  handlerFor(socket: Duplex): Handler | undefined;
  log: Logger;
  /** Headers must arrive within this (slowloris); default 10 s. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections close after this; default 60 s. */
  keepAliveTimeoutMs?: number;
}

/** Larger request heads get 431. */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface ProxyHttpServer {
  server: Server;
  /** From now on every response carries `connection: close`; idle keep-alive connections close now. */
  drain(): void;
}

export function createHttpServer(opts: HttpServerOptions): ProxyHttpServer {
  const state = { draining: false };
  // Requests in flight per connection. The server never listens, so Node's own
  // connection tracking (closeIdleConnections) does not cover these sockets.
  const inFlight = new Map<Duplex, number>();
  const server = createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      requestTimeout: 0,
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 60_000,
      noDelay: true,
    },
    (req, res) => {
      const socket = req.socket;
      inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
      res.once('close', () => {
        const left = (inFlight.get(socket) ?? 1) - 1;
        inFlight.set(socket, left);
        if (left === 0 && state.draining) socket.end();
      });
      if (state.draining) res.shouldKeepAlive = false;
      void serve(req, res, opts);
    },
  );
  server.on('connection', (socket: Duplex) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  return {
    server,
    drain() {
      state.draining = true;
      for (const [socket, n] of inFlight) if (n === 0) socket.end();
    },
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, opts: HttpServerOptions): Promise<void> {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const handler = opts.handlerFor(req.socket);
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  const preq: ProxyRequest = {
    protocol: 'http1',
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    headers: endToEndHeaders(req.headers),
    body: hasBody ? req : null,
    startedAt: performance.now(),
    signal: controller.signal,
  };
  if (!hasBody) req.resume();
  let response: ProxyResponse;
  try {
    response = handler ? await handler(preq) : localResponse(503, 'no-route', 'tsmesh: no route for this connection');
  } catch (e) {
    opts.log.warn('request failed', { error: (e as Error).message });
    response = localResponse(502, 'proxy-error', `tsmesh: ${(e as Error).message}`);
  }
  if (res.destroyed) {
    response.body?.destroy();
    return;
  }
  try {
    res.writeHead(response.status, endToEndHeaders(response.headers as Record<string, string>) as Record<string, string | string[]>);
    if (response.body) await sendBody(response.body, res);
    else res.end();
  } catch (e) {
    // The client or the upstream went away mid-body: nothing more to send.
    opts.log.debug('response stream ended early', { error: (e as Error).message });
    res.destroy();
  }
}
