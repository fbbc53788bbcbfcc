// The proxy's admin port (15020): /live, /ready, /metrics, /config and the
// app containers' rewritten probes. Plain node:http: the proxy stays light,
// and everything here is a handful of exact paths.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Counter, Registry } from 'prom-client';
import type { AppProbes } from '../../contract/env.js';
import { silentLogger, type Logger } from '../../lib/log.js';
import { WaitingConnections } from '../net/waiting.js';
import { runAppProbe } from './app-health.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { STATUS_CODES, createServer } = process.getBuiltinModule('node:http');

export interface AdminServerOptions {
  registry: Registry;
  /** undefined when ready, else why not (combineReadiness joins several). */
  readiness: () => string | undefined;
  /** The config the proxy is running; undefined before the first one arrives. */
  config: () => unknown;
  /** The app's original probes (TSMESH_APP_PROBES, read with parseAppProbes). */
  appProbes?: AppProbes;
  log?: Logger;
  limits?: Partial<AdminLimits>;
  /** Counts connections the server closed unasked: direction "admin", reason "overload" or "first-request-timeout". */
  refused?: Counter<'direction' | 'reason'>;
}

export interface AdminLimits {
  /**
   * To receive a request's headers; a new connection's first request, from
   * the connection's start (node:http starts counting at the first byte, so
   * a client that sends nothing would be held for ever).
   */
  headersTimeoutMs: number;
  /** To receive a whole request (answering a slow app probe is not counted). */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderSize: number;
  /**
   * Kubelet and a scraper need a few. Past this, a new connection closes the
   * oldest one not being answered of the source address that holds the most
   * (net/waiting.ts): refusing the newest, as node:http's maxConnections did
   * at 256, refused every kubelet probe while 256 idle connections were open.
   * An idle connection costs about 3 kB of heap and 8 kB of RSS, so a
   * thousand fit without any being shed.
   */
  maxConnections: number;
  /** How often node:http checks the timeouts above. */
  checkIntervalMs: number;
}

// Kubelet and Prometheus write a request head in one segment, well inside a probe's 1 s timeout.
export const DEFAULT_ADMIN_LIMITS: Readonly<AdminLimits> = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 8 * 1024,
  maxConnections: 1024,
  checkIntervalMs: 1_000,
};

const PATHS = '/live, /ready, /metrics, /config, /app-health/<container>/<livez|readyz|startupz>';

/** Readiness that holds only when every check does; reports the first that does not. */
export function combineReadiness(...checks: (() => string | undefined)[]): () => string | undefined {
  return () => {
    for (const check of checks) {
      const why = check();
      if (why !== undefined) return why;
    }
    return undefined;
  };
}

/** The request handler alone, for tests that need no socket and for servers built elsewhere. */
export function adminHandler(opts: AdminServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const log = opts.log ?? silentLogger;
  const probes = opts.appProbes ?? {};
  const text = (res: ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(body);
  };

  return (req, res) => {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return text(res, 405, `method ${req.method ?? '?'} is not allowed; the admin port answers GET and HEAD\n`);
      }
      const path = pathOf(req.url);
      if (path === undefined) return text(res, 400, 'the request target is not a path\n');
      switch (path) {
        case '/live':
          return text(res, 200, 'live\n');
        case '/ready': {
          const why = opts.readiness();
          return why === undefined ? text(res, 200, 'ready\n') : text(res, 503, `not ready: ${why}\n`);
        }
        case '/metrics':
          settle(
            res,
            opts.registry.metrics().then(
              (body) => void res.writeHead(200, { 'content-type': opts.registry.contentType }).end(body),
              (e: Error) => text(res, 500, `metrics failed: ${e.message}\n`),
            ),
          );
          return;
        case '/config': {
          const config = opts.config();
          if (config === undefined) return text(res, 503, 'no config received yet\n');
          const body = JSON.stringify(config, null, 2) + '\n';
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
          return;
        }
      }
      if (path.startsWith('/app-health/')) {
        const probe = probes[path];
        if (!probe) {
          const known = Object.keys(probes);
          return text(res, 404, `no app probe at ${path}; this proxy runs ${known.length ? known.join(', ') : 'none'} (from the pod's TSMESH_APP_PROBES)\n`);
        }
        settle(
          res,
          runAppProbe(probe, req.headers['user-agent']).then(({ status, body }) => {
            if (status >= 400) log.debug('app probe failed', { path, status, body: body.slice(0, 200) });
            text(res, status, body);
          }),
        );
        return;
      }
      return text(res, 404, `no such admin path ${path}; try ${PATHS}\n`);
    } catch (e) {
      log.error('admin request failed', { url: req.url, error: (e as Error).message });
      if (!res.headersSent) text(res, 500, `internal error: ${(e as Error).message}\n`);
      else res.destroy();
    }
  };
}

/** An answer written later must not become an unhandled rejection: a failure there closes the connection. */
function settle(res: ServerResponse, answered: Promise<void>): void {
  answered.catch(() => res.destroy());
}

function pathOf(url: string | undefined): string | undefined {
  if (!url?.startsWith('/')) return undefined;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The admin server, with limits that keep slow, idle or malformed clients from holding it. Call listen() on it. */
export function createAdminServer(opts: AdminServerOptions): Server {
  const limits = { ...DEFAULT_ADMIN_LIMITS, ...opts.limits };
  const log = opts.log ?? silentLogger;
  const refused = (reason: string): void => opts.refused?.inc({ direction: 'admin', reason });
  const handle = adminHandler(opts);
  const connections = new WaitingConnections(
    limits.maxConnections,
    (socket) => {
      refused('overload');
      socket.destroy();
    },
    true,
  );
  // A connection that has not brought its first request head yet: closed at headersTimeoutMs from its start.
  const firstRequest = new WeakMap<Socket, NodeJS.Timeout>();
  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
    (req, res) => {
      const socket = req.socket;
      clearTimeout(firstRequest.get(socket));
      connections.serve(socket);
      // Idle again once answered: from then on it waits for a next request, as the newest.
      res.once('close', () => {
        if (!socket.destroyed) connections.wait(socket);
      });
      handle(req, res);
    },
  );
  server.on('connection', (socket: Socket) => {
    connections.wait(socket);
    const timer = setTimeout(() => {
      refused('first-request-timeout');
      if (socket.bytesRead === 0) return void socket.destroy();
      socket.end(statusOnly(408), () => socket.destroy());
    }, limits.headersTimeoutMs);
    timer.unref();
    firstRequest.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      connections.forget(socket);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    log.debug('admin client error', { code: err.code, error: err.message });
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    socket.end(statusOnly(err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400));
  });
  return server;
}

function statusOnly(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`;
}
