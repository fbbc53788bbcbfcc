// Route matching for one service port, compiled once per config: from the
// port's Gateway API routes (ServiceConfig.gatewayRoutes, already in the
// Gateway API's precedence order) when it has any, else from its
// TrafficPolicy's routes. Routes are tried in order, first match wins. A
// request that matches none takes the default route: to the service itself
// under a TrafficPolicy, a 404 on a port with Gateway API routes (as the
// Gateway API says of a request no rule matched). A route's own timeout,
// retries and faults replace the policy's; unset ones inherit them.
//
// Matches, every field that is set must match:
// - the path is the request's without its query: pathPrefix on whole path
//   segments ("/api" matches "/api", "/api/", "/api/v1", "/api?x", not
//   "/apis"), pathExact the whole path, pathRegex a regular expression that
//   must match the whole path (every regex here runs in time linear in the
//   value, on lib/linear-regexp.ts: a pattern cannot make a request costly);
// - headers by exact value or whole-value regex, names case-insensitive; a
//   field sent more than once is matched as the one value its lines join to
//   (RFC 9110 5.3), as Node gives it, Set-Cookie's lines one by one;
// - query parameters by exact value or whole-value regex, names
//   case-sensitive, the first occurrence of a name counts; the query is
//   parsed once per request, and only when some route of the port has a
//   query match, so the common request allocates nothing to be matched;
// - the method, exactly.
import { parseDuration } from '../../lib/duration.js';
import { LinearRegExp } from '../../lib/linear-regexp.js';
import type { RoutingTable, ServiceTarget } from '../config/table.js';
import type { FaultPolicy, RetryPolicy, Route, RouteFilters, RouteMatch } from '../../contract/proxy-config.js';
import type { Handler, ProxyRequest } from './types.js';

export interface CompiledMatch {
  /** Without its trailing "/"; undefined for "/" (every path). */
  pathPrefix: string | undefined;
  pathExact: string | undefined;
  /** Anchored to the whole path. */
  pathRegex: LinearRegExp | undefined;
  method: string | undefined;
  headers: readonly (readonly [name: string, value: string])[];
  headerRegex: readonly (readonly [name: string, pattern: LinearRegExp])[];
  /** Exact (a string) or regex query parameter matches. */
  query: readonly (readonly [name: string, value: string | LinearRegExp])[];
}

export interface CompiledBackend {
  /** "name.namespace". */
  service: string;
  weight: number;
  /** undefined when the config has no such service or port: its share of requests gets 500. */
  target: ServiceTarget | undefined;
  /** Gateway API's backend-level filters: header modifiers and mirrors for the requests it takes. */
  filters?: RouteFilters | undefined;
}

export interface CompiledRoute {
  name: string;
  /** undefined: every request. */
  match: CompiledMatch | undefined;
  /** Empty: every request gets 500 (a Gateway API rule none of whose backends resolved). */
  backends: CompiledBackend[];
  /** 0: none. */
  timeoutMs: number;
  /** Each attempt's bound (Gateway API timeouts.backendRequest); 0: none. */
  backendTimeoutMs: number;
  retries: RetryPolicy | undefined;
  faults: FaultPolicy | undefined;
  filters: RouteFilters | undefined;
  /** The path prefix the route matched, as configured ("/" when it matches every path): what a replacePrefixMatch replaces. */
  matchedPrefix: string;
  /** The default route of a port with Gateway API routes: no route matched, and the request gets 404. */
  unmatched?: true;
}

export const DEFAULT_ROUTE_NAME = 'default';

/** The port's routes (its Gateway API routes, else its TrafficPolicy's), then the default route; the last one always matches. */
export function compileRoutes(target: ServiceTarget, table: Pick<RoutingTable, 'byName'>): CompiledRoute[] {
  const policy = target.service.trafficPolicy;
  const inherited = {
    timeoutMs: policy?.timeout ? parseDuration(policy.timeout) : 0,
    backendTimeoutMs: 0,
    retries: policy?.retries,
    faults: policy?.faults,
    filters: undefined,
    matchedPrefix: '/',
  };
  const self: CompiledBackend[] = [{ service: target.key, weight: 1, target }];
  const gateway = target.service.gatewayRoutes?.find((g) => g.port === target.port.port);
  const routes: CompiledRoute[] = (gateway?.routes ?? policy?.routes ?? []).map((r: Route, i) => ({
    name: r.name ?? `route-${i}`,
    match: r.match ? compileMatch(r.match) : undefined,
    backends: r.backends ? r.backends.filter((b) => b.weight > 0).map((b) => ({ ...resolveBackend(target, table, b.service, b.weight, b.port), filters: b.filters })) : self,
    timeoutMs: r.timeout ? parseDuration(r.timeout) : inherited.timeoutMs,
    backendTimeoutMs: r.backendTimeout ? parseDuration(r.backendTimeout) : 0,
    retries: r.retries ?? inherited.retries,
    faults: r.faults ?? inherited.faults,
    filters: r.filters,
    matchedPrefix: r.match?.pathPrefix ?? '/',
  }));
  if (routes.at(-1)?.match !== undefined || routes.length === 0) {
    routes.push({ name: DEFAULT_ROUTE_NAME, match: undefined, backends: self, ...inherited, ...(gateway ? { unmatched: true as const } : {}) });
  }
  return routes;
}

/** A regular expression that must match the whole of a value, in linear time (the validator has checked it compiles). */
const whole = (pattern: string): LinearRegExp => new LinearRegExp(pattern);

export function compileMatch(m: RouteMatch): CompiledMatch | undefined {
  const headers = Object.entries(m.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const headerRegex = Object.entries(m.headerRegex ?? {}).map(([k, v]) => [k.toLowerCase(), whole(v)] as const);
  const query = [...Object.entries(m.queryParams ?? {}), ...Object.entries(m.queryParamRegex ?? {}).map(([k, v]) => [k, whole(v)] as const)];
  const pathPrefix = m.pathPrefix === undefined || /^\/*$/.test(m.pathPrefix) ? undefined : m.pathPrefix.replace(/\/+$/, '');
  const out: CompiledMatch = { pathPrefix, pathExact: m.pathExact, pathRegex: m.pathRegex === undefined ? undefined : whole(m.pathRegex), method: m.method, headers, headerRegex, query };
  const any = out.pathPrefix ?? out.pathExact ?? out.pathRegex ?? out.method;
  return any === undefined && headers.length + headerRegex.length + query.length === 0 ? undefined : out;
}

/** A backend by "name" (the caller's namespace) or "name.namespace", on `port` when given, else the same port number, else the same port name, else its only port. */
export function resolveBackend(from: ServiceTarget, table: Pick<RoutingTable, 'byName'>, service: string, weight: number, port?: number): CompiledBackend {
  const key = service.includes('.') ? service : `${service}.${from.service.namespace}`;
  if (key === from.key && (port === undefined || port === from.port.port)) return { service: key, weight, target: from };
  const ports = table.byName.get(key);
  if (port !== undefined) return { service: key, weight, target: ports?.get(port) };
  let target = ports?.get(from.port.port);
  if (!target && ports) {
    const all = [...ports.values()];
    target = all.find((t) => from.port.name !== undefined && t.port.name === from.port.name) ?? (all.length === 1 ? all[0] : undefined);
  }
  return { service: key, weight, target };
}

/** Where the path of a request target ends: at its query or fragment, else its end. */
export function pathEnd(target: string): number {
  const q = target.indexOf('?');
  const end = q < 0 ? target.length : q;
  const f = target.lastIndexOf('#', end);
  return f < 0 ? end : f;
}

/** A request's query parameters, the first value of each name, percent-decoded ("+" a space, as forms write it). */
export function parseQuery(target: string): Map<string, string> {
  const out = new Map<string, string>();
  const q = target.indexOf('?');
  if (q < 0) return out;
  const f = target.indexOf('#', q);
  for (const pair of target.slice(q + 1, f < 0 ? undefined : f).split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeComponent(eq < 0 ? pair : pair.slice(0, eq));
    if (!out.has(name)) out.set(name, eq < 0 ? '' : decodeComponent(pair.slice(eq + 1)));
  }
  return out;
}

function decodeComponent(s: string): string {
  const plus = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!plus.includes('%')) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    // A malformed escape is taken as written: the request is matched, not refused, here.
    return plus;
  }
}

/** Whether `req` matches; `query` gives its parsed query when the match needs one (parseQuery). */
export function matches(m: CompiledMatch, req: ProxyRequest, query?: () => Map<string, string>): boolean {
  if (m.method !== undefined && req.method !== m.method) return false;
  const path = req.path;
  const prefix = m.pathPrefix;
  if (prefix !== undefined) {
    if (!path.startsWith(prefix)) return false;
    const next = path.charCodeAt(prefix.length);
    // End of path, "/", "?" or "#": the prefix ends on a segment boundary.
    if (!(Number.isNaN(next) || next === 0x2f || next === 0x3f || next === 0x23)) return false;
  }
  const exact = m.pathExact;
  if (exact !== undefined) {
    if (!path.startsWith(exact)) return false;
    const next = path.charCodeAt(exact.length);
    if (!(Number.isNaN(next) || next === 0x3f || next === 0x23)) return false;
  }
  if (m.pathRegex !== undefined) {
    const end = pathEnd(path);
    if (!m.pathRegex.test(end === path.length ? path : path.slice(0, end))) return false;
  }
  for (const [name, value] of m.headers) {
    const got = req.headers[name];
    if (got === undefined || (typeof got === 'string' ? got !== value : !got.includes(value))) return false;
  }
  for (const [name, pattern] of m.headerRegex) {
    const got = req.headers[name];
    if (got === undefined || (typeof got === 'string' ? !pattern.test(got) : !got.some((v) => pattern.test(v)))) return false;
  }
  if (m.query.length > 0) {
    const params = query ? query() : parseQuery(path);
    for (const [name, want] of m.query) {
      const got = params.get(name);
      if (got === undefined || (typeof want === 'string' ? got !== want : !want.test(got))) return false;
    }
  }
  return true;
}

/** Dispatches each request to the handler of the first route that matches; the last route must match everything. */
export function routeRequests(routes: readonly { match: CompiledMatch | undefined; handler: Handler }[]): Handler {
  const last = routes.at(-1);
  if (!last || last.match !== undefined) throw new Error('routeRequests: the last route must match every request');
  if (routes.length === 1) return last.handler;
  if (!routes.some((r) => (r.match?.query.length ?? 0) > 0)) {
    return (req) => {
      for (const r of routes) if (r.match === undefined || matches(r.match, req)) return r.handler(req);
      return last.handler(req);
    };
  }
  return (req) => {
    // Parsed at most once per request, by the first route that asks.
    let params: Map<string, string> | undefined;
    const query = (): Map<string, string> => (params ??= parseQuery(req.path));
    for (const r of routes) if (r.match === undefined || matches(r.match, req, query)) return r.handler(req);
    return last.handler(req);
  };
}
