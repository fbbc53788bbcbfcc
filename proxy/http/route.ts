// Route matching for one service port, compiled from its TrafficPolicy once
// per config. Routes are tried in order, first match wins; a request that
// matches none takes the default route to the service itself. A route's own
// timeout, retries and faults replace the policy's; unset ones inherit them.
//
// Matches: pathPrefix is matched on whole path segments, as Gateway API's
// PathPrefix ("/api" matches "/api", "/api/", "/api/v1", "/api?x", not
// "/apis"); headers are exact values, names case-insensitive; every field
// that is set must match.
import { parseDuration } from '../../lib/duration.js';
import type { RoutingTable, ServiceTarget } from '../config/table.js';
import type { FaultPolicy, RetryPolicy, RouteMatch } from '../../contract/proxy-config.js';
import type { Handler, ProxyRequest } from './types.js';

export interface CompiledMatch {
  pathPrefix: string | undefined;
  headers: readonly (readonly [name: string, value: string])[];
}

export interface CompiledBackend {
  /** "name.namespace". */
  service: string;
  weight: number;
  /** undefined when the config has no such service or port: its share of requests gets 500. */
  target: ServiceTarget | undefined;
}

export interface CompiledRoute {
  name: string;
  /** undefined: every request. */
  match: CompiledMatch | undefined;
  backends: CompiledBackend[];
  /** 0: none. */
  timeoutMs: number;
  retries: RetryPolicy | undefined;
  faults: FaultPolicy | undefined;
}

export const DEFAULT_ROUTE_NAME = 'default';

/** The policy's routes, then the default route; the last one always matches. */
export function compileRoutes(target: ServiceTarget, table: Pick<RoutingTable, 'byName'>): CompiledRoute[] {
  const policy = target.service.trafficPolicy;
  const inherited = {
    timeoutMs: policy?.timeout ? parseDuration(policy.timeout) : 0,
    retries: policy?.retries,
    faults: policy?.faults,
  };
  const self: CompiledBackend[] = [{ service: target.key, weight: 1, target }];
  const routes: CompiledRoute[] = (policy?.routes ?? []).map((r, i) => ({
    name: r.name ?? `route-${i}`,
    match: r.match ? compileMatch(r.match) : undefined,
    backends: r.backends ? r.backends.filter((b) => b.weight > 0).map((b) => resolveBackend(target, table, b.service, b.weight)) : self,
    timeoutMs: r.timeout ? parseDuration(r.timeout) : inherited.timeoutMs,
    retries: r.retries ?? inherited.retries,
    faults: r.faults ?? inherited.faults,
  }));
  if (routes.at(-1)?.match !== undefined || routes.length === 0) routes.push({ name: DEFAULT_ROUTE_NAME, match: undefined, backends: self, ...inherited });
  return routes;
}

function compileMatch(m: RouteMatch): CompiledMatch | undefined {
  const headers = Object.entries(m.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  if (m.pathPrefix === undefined && headers.length === 0) return undefined;
  return { pathPrefix: m.pathPrefix === '/' ? undefined : m.pathPrefix?.replace(/\/+$/, ''), headers };
}

/** A backend by "name" (the caller's namespace) or "name.namespace", on the same port number, else the same port name, else its only port. */
export function resolveBackend(from: ServiceTarget, table: Pick<RoutingTable, 'byName'>, service: string, weight: number): CompiledBackend {
  const key = service.includes('.') ? service : `${service}.${from.service.namespace}`;
  if (key === from.key) return { service: key, weight, target: from };
  const ports = table.byName.get(key);
  let target = ports?.get(from.port.port);
  if (!target && ports) {
    const all = [...ports.values()];
    target = all.find((t) => from.port.name !== undefined && t.port.name === from.port.name) ?? (all.length === 1 ? all[0] : undefined);
  }
  return { service: key, weight, target };
}

export function matches(m: CompiledMatch, req: ProxyRequest): boolean {
  const prefix = m.pathPrefix;
  if (prefix !== undefined) {
    const path = req.path;
    if (!path.startsWith(prefix)) return false;
    const next = path.charCodeAt(prefix.length);
    // End of path, "/", "?" or "#": the prefix ends on a segment boundary.
    if (!(Number.isNaN(next) || next === 0x2f || next === 0x3f || next === 0x23)) return false;
  }
  for (const [name, value] of m.headers) {
    const got = req.headers[name];
    if (got === undefined) return false;
    if (typeof got === 'string' ? got !== value : !got.includes(value)) return false;
  }
  return true;
}

/** Dispatches each request to the handler of the first route that matches; the last route must match everything. */
export function routeRequests(routes: readonly { match: CompiledMatch | undefined; handler: Handler }[]): Handler {
  const last = routes.at(-1);
  if (!last || last.match !== undefined) throw new Error('routeRequests: the last route must match every request');
  if (routes.length === 1) return last.handler;
  return (req) => {
    for (const r of routes) if (r.match === undefined || matches(r.match, req)) return r.handler(req);
    return last.handler(req);
  };
}
