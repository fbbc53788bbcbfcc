// The control plane's admin port (15014): /metrics, /healthz, /readyz.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface AdminServerOptions {
  registry: Registry;
  /** Readiness checks: each returns undefined when ready, else why not. */
  readiness: () => string | undefined;
}

export function createAdminServer(opts: AdminServerOptions): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const why = opts.readiness();
      res.writeHead(why ? 503 : 200, { 'content-type': 'text/plain' }).end(why ? `not ready: ${why}\n` : 'ready\n');
    } else if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics, /healthz, /readyz\n');
    }
  });
}
