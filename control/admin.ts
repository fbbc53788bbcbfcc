// The control plane's admin port (15014): /metrics, /healthz, /readyz, and
// the mesh dashboard: the page at / and its JSON at /api/v1/mesh, the
// stream of `tsmesh tap` at /api/v1/tap (control/tap.ts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { DASHBOARD_HTML } from './observe/dashboard-page.js';
import type { MeshView } from './observe/view.js';
import { lookupProxyConfig, PROXIES_PATH, PROXY_CONFIG_PATH, proxyStatusList } from './proxies.js';
import type { ProxyStreamState } from './stream.js';
import type { ApiAnswer } from './observe/api.js';
import { TAP_PATH } from './tap.js';

export interface AdminServerOptions {
  registry: Registry;
  /** Readiness checks: each returns undefined when ready, else why not. */
  readiness: () => string | undefined;
  /** The proxies' golden metrics; without it / and /api/v1/mesh answer 404. */
  meshView?: () => MeshView;
  /** The proxies on this replica's discovery stream (`tsmesh proxy-status`, `tsmesh proxy-config`); without it /api/v1/proxies answers 404. */
  proxies?: () => readonly ProxyStreamState[];
  /** The CA material and root rotation in force (control/ca-rotation.ts); without it /api/v1/ca answers 404. */
  caStatus?: () => unknown;
  /** The dashboard's further JSON (history, policies; observe/api.ts): an answer, or undefined for another path. */
  dashboardApi?: (path: string, query: URLSearchParams) => ApiAnswer | undefined;
  /** `tsmesh tap`'s stream (control/tap.ts); without it /api/v1/tap answers 404. */
  tap?: (req: IncomingMessage, res: ServerResponse) => void;
}

export const MESH_VIEW_PATH = '/api/v1/mesh';
export const CA_STATUS_PATH = '/api/v1/ca';

export function createAdminServer(opts: AdminServerOptions): Server {
  return createServer((req, res) => {
    const [path = '/', search = ''] = (req.url ?? '/').split('?');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const api = opts.dashboardApi?.(path, new URLSearchParams(search));
    if (api) {
      res.writeHead(api.status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(api.body));
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const why = opts.readiness();
      res.writeHead(why ? 503 : 200, { 'content-type': 'text/plain' }).end(why ? `not ready: ${why}\n` : 'ready\n');
    } else if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`),
      );
    } else if (opts.meshView && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(DASHBOARD_HTML);
    } else if (opts.meshView && path === MESH_VIEW_PATH) {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(opts.meshView()));
    } else if (opts.caStatus && path === CA_STATUS_PATH) {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(opts.caStatus()));
    } else if (opts.tap && path === TAP_PATH) {
      opts.tap(req, res);
    } else if (opts.proxies && (path === PROXIES_PATH || path === PROXY_CONFIG_PATH)) {
      // The proxies on the discovery stream, or the config one of them acknowledged (proxies.ts).
      const found = path === PROXIES_PATH ? { found: proxyStatusList(opts.proxies()) } : lookupProxyConfig(opts.proxies(), new URL(req.url ?? '/', 'http://admin').searchParams.get('proxy'));
      const [status, body] = 'found' in found ? [200, found.found] : [found.status, { error: found.error }];
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
    } else {
      const paths = [...(opts.meshView ? ['/', MESH_VIEW_PATH] : []), ...(opts.tap ? [TAP_PATH] : []), ...(opts.caStatus ? [CA_STATUS_PATH] : []), '/metrics', '/healthz', '/readyz'];
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; try ${paths.join(', ')}\n`);
    }
  });
}
