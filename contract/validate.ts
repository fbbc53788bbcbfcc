// Reads a ProxyConfig from untrusted JSON/YAML: every field checked, unknown
// fields refused, defaults filled in. Errors name the field path and say what
// was expected, e.g. `services[1].ports[0].port: 70000 is not a port (1-65535)`.
import { parseSpiffeId, validateTrustDomain, DEFAULT_TRUST_DOMAIN } from './spiffe.js';
import { formatDuration, parseDuration } from '../lib/duration.js';
import { LinearRegExp, LinearRegExpError } from '../lib/linear-regexp.js';
import { ValidationError, boolean, describe, duration, integer, ip, join, list, number, object, oneOf, port, string } from '../lib/schema.js';
import { CONFIG_API_VERSION, CONFIG_KIND, DEFAULT_RETRY_BUDGET, FIELDS, type AuthorizationPolicySpec, type AuthorizationRule, type CircuitBreakerPolicy, type Endpoint, type FaultPolicy, type InboundConfig, type LimitsPolicy, type MeshSettings, type MtlsMode, type ProxyConfig, type RetryBudget, type RetryPolicy, type Route, type ServiceConfig, type ServicePort, type TrafficPolicySpec } from './proxy-config.js';
import { AUTHORIZATION_ACTIONS, DEFAULT_INBOUND_POLICIES, MTLS_MODES, PORT_PROTOCOLS, RETRY_CONDITIONS, isRetryOn } from './vocabulary.js';
import { normalizePath } from '../lib/url-path.js';
import { DEFAULT_TRACING, type TelemetryOverrides, type TracingSettings } from './proxy-config.js';
import { DEFAULT_ACCESS_LOG, type AccessLogSettings } from './proxy-config.js';
import { ACCESS_LOG_MODES } from './vocabulary.js';
import { EGRESS_MODES } from './vocabulary.js';
import type { EgressRule, EgressSettings, EgressTls } from './proxy-config.js';
import type { GatewayPortRoutes, HeaderModifier, MirrorFilter, PathModifier, RedirectFilter, RouteFilters, RouteMatch, WeightedBackend } from './proxy-config.js';

/** A config that fails validation; the message names the field. */
export { ValidationError as ConfigError };

export function spiffeId(v: unknown, path: string): string {
  const s = string(v, path);
  try {
    parseSpiffeId(s);
  } catch (e) {
    throw new ValidationError(path, (e as Error).message);
  }
  return s;
}

/** The longest a request may wait for an endpoint under its limit: past that, a caller has long given up. */
const MAX_PENDING_TIMEOUT_MS = 3_600_000;

function retryBudget(v: unknown, path: string): RetryBudget {
  const o = object(v, path, FIELDS.RetryBudget);
  return {
    ratio: number(o.ratio ?? DEFAULT_RETRY_BUDGET.ratio, join(path, 'ratio'), 0, 1),
    minRetriesPerSecond: integer(o.minRetriesPerSecond ?? DEFAULT_RETRY_BUDGET.minRetriesPerSecond, join(path, 'minRetriesPerSecond'), 0, 10_000),
    ttl: duration(o.ttl ?? DEFAULT_RETRY_BUDGET.ttl, join(path, 'ttl')),
  };
}

function mesh(v: unknown, path: string): MeshSettings {
  const o = object(v ?? {}, path, FIELDS.MeshSettings);
  const trustDomain = string(o.trustDomain ?? DEFAULT_TRUST_DOMAIN, join(path, 'trustDomain'));
  try {
    validateTrustDomain(trustDomain);
  } catch (e) {
    throw new ValidationError(join(path, 'trustDomain'), (e as Error).message);
  }
  return {
    trustDomain,
    mtlsMode: oneOf(o.mtlsMode ?? 'STRICT', join(path, 'mtlsMode'), MTLS_MODES),
    ...(o.defaultInboundPolicy !== undefined ? { defaultInboundPolicy: oneOf(o.defaultInboundPolicy, join(path, 'defaultInboundPolicy'), DEFAULT_INBOUND_POLICIES) } : {}),
    retryBudget: retryBudget(o.retryBudget ?? {}, join(path, 'retryBudget')),
    ...(o.tracing !== undefined ? { tracing: tracing(o.tracing, join(path, 'tracing')) } : {}),
    ...(o.accessLog !== undefined ? { accessLog: { ...DEFAULT_ACCESS_LOG, ...accessLogFields(o.accessLog, join(path, 'accessLog')) } } : {}),
    ...(o.egress !== undefined ? { egress: egress(o.egress, join(path, 'egress')) } : {}),
  };
}

const HOST_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const EGRESS_HOST = new RegExp(`^(?:\\*\\.)?(?:${HOST_LABEL}\\.)*${HOST_LABEL}$`);
export const EGRESS_HOST_HINT = 'expected a DNS name like api.example.com, or *.example.com for every name under example.com';

/** An egress host: a DNS name, or "*." and one; lowercased. */
function egressHost(v: unknown, path: string): string {
  const s = string(v, path).trim().toLowerCase();
  if (s.length > 253 || !EGRESS_HOST.test(s)) throw new ValidationError(path, `${describe(v)} is not a host name; ${EGRESS_HOST_HINT}`);
  return s;
}

/** "10.0.0.0/8", "fd00::/8", or one address; kept as written. */
function egressCidr(v: unknown, path: string): string {
  const s = string(v, path).trim();
  const slash = s.indexOf('/');
  const address = ip(slash < 0 ? s : s.slice(0, slash), path);
  if (slash >= 0) {
    const bits = address.includes(':') ? 128 : 32;
    const prefix = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) throw new ValidationError(path, `${describe(v)} has a bad prefix length; use 0-${bits}`);
  }
  return s;
}

function egressTls(v: unknown, path: string): EgressTls {
  const o = object(v ?? {}, path, FIELDS.EgressTls);
  const out: EgressTls = {};
  if (o.port !== undefined) out.port = port(o.port, join(path, 'port'));
  if (o.caBundle !== undefined) {
    const pem = string(o.caBundle, join(path, 'caBundle'));
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ValidationError(join(path, 'caBundle'), 'expected PEM certificates');
    out.caBundle = pem;
  }
  if (o.caFile !== undefined) out.caFile = string(o.caFile, join(path, 'caFile'));
  if (out.caBundle !== undefined && out.caFile !== undefined) throw new ValidationError(path, 'give either caBundle or caFile, not both');
  return out;
}

function egressRule(v: unknown, path: string): EgressRule {
  const o = object(v, path, FIELDS.EgressRule);
  const out: EgressRule = { name: string(o.name, join(path, 'name')) };
  if (out.name === '' || out.name === 'other') throw new ValidationError(join(path, 'name'), `${describe(o.name)} cannot name an entry; give a name other than "" and "other"`);
  if (o.hosts !== undefined) out.hosts = list(o.hosts, join(path, 'hosts'), egressHost);
  if (o.cidrs !== undefined) out.cidrs = list(o.cidrs, join(path, 'cidrs'), egressCidr);
  if (o.ports !== undefined) out.ports = list(o.ports, join(path, 'ports'), port);
  if (!out.hosts?.length && !out.cidrs?.length) throw new ValidationError(path, 'an egress entry needs hosts or cidrs');
  if (o.originateTls !== undefined) {
    if (!out.hosts?.length) throw new ValidationError(join(path, 'originateTls'), 'TLS is originated with SNI the request\'s host: the entry needs hosts');
    out.originateTls = egressTls(o.originateTls, join(path, 'originateTls'));
  }
  return out;
}

/** `{mode, allow}`: an egress mode and allow-list entries, each entry's name once. */
function egress(v: unknown, path: string): EgressSettings {
  const o = object(v ?? {}, path, FIELDS.EgressSettings);
  const out: EgressSettings = {};
  if (o.mode !== undefined) out.mode = oneOf(o.mode, join(path, 'mode'), EGRESS_MODES);
  if (o.allow !== undefined) {
    out.allow = list(o.allow, join(path, 'allow'), egressRule);
    const seen = new Set<string>();
    for (const [i, r] of out.allow.entries()) {
      if (seen.has(r.name)) throw new ValidationError(`${join(path, 'allow')}[${i}].name`, `${describe(r.name)} names two entries`);
      seen.add(r.name);
    }
  }
  return out;
}

const COLLECTOR_EXAMPLE = 'http://otel-collector.observability:4318/v1/traces';

/** An OTLP/HTTP traces URL; one without a path gets OTLP's /v1/traces. */
function collectorUrl(v: unknown, path: string): string {
  const s = string(v, path);
  let url: URL | undefined;
  try {
    url = new URL(s);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '' || url.username !== '' || url.password !== '')
    throw new ValidationError(path, `${describe(s)} is not the http:// or https:// URL of a collector's OTLP/HTTP receiver, such as ${COLLECTOR_EXAMPLE}`);
  return url.pathname === '/' ? new URL('/v1/traces', url).href : s;
}

/** The tracing fields `v` sets: a mapping of TracingSettings' fields, or "on" / "off" for export alone. */
function tracingFields(v: unknown, path: string): Partial<TracingSettings> {
  if (v === 'on' || v === 'off') return { export: v === 'on' };
  if (typeof v === 'string') throw new ValidationError(path, `${describe(v)} is not on, off or a mapping of ${FIELDS.TracingSettings.join(', ')}`);
  const o = object(v, path, FIELDS.TracingSettings);
  const out: Partial<TracingSettings> = {};
  if (o.export !== undefined) out.export = boolean(o.export, join(path, 'export'));
  if (o.collector !== undefined) out.collector = collectorUrl(o.collector, join(path, 'collector'));
  if (o.sampling !== undefined) out.sampling = number(o.sampling, join(path, 'sampling'), 0, 1);
  return out;
}

/** Tracing settings laid over `base` (the defaults, or the mesh's); export needs a collector. */
function tracing(v: unknown, path: string, base: TracingSettings = DEFAULT_TRACING): TracingSettings {
  const out = { ...base, ...tracingFields(v, path) };
  if (out.export && out.collector === undefined) throw new ValidationError(join(path, 'collector'), `is needed when export is on: the URL of a collector's OTLP/HTTP receiver, such as ${COLLECTOR_EXAMPLE}`);
  return out;
}

/** The access-log fields `v` sets: a mapping of AccessLogSettings' fields, or a mode alone. */
function accessLogFields(v: unknown, path: string): Partial<AccessLogSettings> {
  if (typeof v === 'string') return { mode: oneOf(v, path, ACCESS_LOG_MODES) };
  const o = object(v, path, FIELDS.AccessLogSettings);
  const out: Partial<AccessLogSettings> = {};
  if (o.mode !== undefined) out.mode = oneOf(o.mode, join(path, 'mode'), ACCESS_LOG_MODES);
  if (o.sampling !== undefined) out.sampling = number(o.sampling, join(path, 'sampling'), 0, 1);
  if (o.query !== undefined) out.query = boolean(o.query, join(path, 'query'));
  return out;
}

function telemetryOverrides(v: unknown, path: string): TelemetryOverrides {
  const o = object(v, path, FIELDS.TelemetryOverrides);
  return {
    ...(o.tracing !== undefined ? { tracing: tracingFields(o.tracing, join(path, 'tracing')) } : {}),
    ...(o.accessLog !== undefined ? { accessLog: accessLogFields(o.accessLog, join(path, 'accessLog')) } : {}),
  };
}

function servicePort(v: unknown, path: string): ServicePort {
  const o = object(v, path, FIELDS.ServicePort);
  const p = port(o.port, join(path, 'port'));
  const out: ServicePort = {
    port: p,
    protocol: oneOf(o.protocol ?? 'auto', join(path, 'protocol'), PORT_PROTOCOLS),
    targetPort: port(o.targetPort ?? p, join(path, 'targetPort')),
  };
  if (o.name !== undefined) out.name = string(o.name, join(path, 'name'));
  return out;
}

function endpoint(v: unknown, path: string): Endpoint {
  const o = object(v, path, FIELDS.Endpoint);
  const out: Endpoint = { address: ip(o.address, join(path, 'address')) };
  if (o.identity !== undefined) out.identity = spiffeId(o.identity, join(path, 'identity'));
  if (o.ports !== undefined) {
    const ports = object(o.ports, join(path, 'ports'), Object.keys(o.ports as object));
    out.ports = Object.fromEntries(Object.entries(ports).map(([k, p]) => [k, port(p, join(join(path, 'ports'), k))]));
  }
  if (o.weight !== undefined) out.weight = integer(o.weight, join(path, 'weight'), 1, 1_000_000);
  if (o.ready !== undefined) out.ready = boolean(o.ready, join(path, 'ready'));
  if (o.skipInboundPorts !== undefined) out.skipInboundPorts = list(o.skipInboundPorts, join(path, 'skipInboundPorts'), portOrRange);
  return out;
}

/** "25" or "8000-8100", as a port list's items are written. */
function portOrRange(v: unknown, path: string): string {
  const s = string(v, path);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  const first = m ? Number(m[1]) : NaN;
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!(first >= 1 && last <= 65535 && first <= last)) throw new ValidationError(path, `${describe(s)} is not a port (1-65535) or a range of ports such as "8000-8100"`);
  return s;
}

function retries(v: unknown, path: string): RetryPolicy {
  const o = object(v, path, FIELDS.RetryPolicy);
  const out: RetryPolicy = { attempts: integer(o.attempts, join(path, 'attempts'), 1, 10, 'a number of attempts') };
  if (o.perTryTimeout !== undefined) out.perTryTimeout = duration(o.perTryTimeout, join(path, 'perTryTimeout'));
  if (o.backoff !== undefined) {
    const b = object(o.backoff, join(path, 'backoff'), FIELDS.Backoff);
    out.backoff = { base: duration(b.base ?? '25ms', join(path, 'backoff.base')), max: duration(b.max ?? '250ms', join(path, 'backoff.max')) };
    if (parseDuration(out.backoff.max) < parseDuration(out.backoff.base))
      throw new ValidationError(join(path, 'backoff.max'), `${out.backoff.max} is shorter than backoff.base ${out.backoff.base}`);
  }
  if (o.retryOn !== undefined)
    out.retryOn = list(o.retryOn, join(path, 'retryOn'), (x, p) => {
      const s = string(x, p);
      if (!isRetryOn(s)) throw new ValidationError(p, `${describe(s)} is not a retry condition; use ${RETRY_CONDITIONS.join(', ')} or a status code`);
      return s;
    });
  if (o.budget !== undefined) out.budget = retryBudget(o.budget, join(path, 'budget'));
  return out;
}

function faults(v: unknown, path: string): FaultPolicy {
  const o = object(v, path, FIELDS.FaultPolicy);
  const out: FaultPolicy = {};
  if (o.abort !== undefined) {
    const a = object(o.abort, join(path, 'abort'), FIELDS.AbortFault);
    out.abort = { percent: number(a.percent, join(path, 'abort.percent'), 0, 100), status: integer(a.status, join(path, 'abort.status'), 200, 599, 'an HTTP status') };
  }
  if (o.delay !== undefined) {
    const d = object(o.delay, join(path, 'delay'), FIELDS.DelayFault);
    out.delay = { percent: number(d.percent, join(path, 'delay.percent'), 0, 100), duration: duration(d.duration, join(path, 'delay.duration')) };
  }
  return out;
}

function circuitBreaker(v: unknown, path: string): CircuitBreakerPolicy {
  const o = object(v, path, FIELDS.CircuitBreakerPolicy);
  const out: CircuitBreakerPolicy = {};
  if (o.consecutiveFailures !== undefined) out.consecutiveFailures = integer(o.consecutiveFailures, join(path, 'consecutiveFailures'), 1, 1000);
  if (o.failureRate !== undefined) {
    const f = object(o.failureRate, join(path, 'failureRate'), FIELDS.FailureRate);
    out.failureRate = {
      threshold: number(f.threshold, join(path, 'failureRate.threshold'), 0.01, 1),
      window: duration(f.window ?? '10s', join(path, 'failureRate.window')),
      minRequests: integer(f.minRequests ?? 20, join(path, 'failureRate.minRequests'), 1, 1_000_000),
    };
  }
  if (o.ejectionTime !== undefined) out.ejectionTime = duration(o.ejectionTime, join(path, 'ejectionTime'));
  if (o.maxEjectionPercent !== undefined) out.maxEjectionPercent = number(o.maxEjectionPercent, join(path, 'maxEjectionPercent'), 0, 100);
  if (o.countCancellations !== undefined) out.countCancellations = boolean(o.countCancellations, join(path, 'countCancellations'));
  return out;
}

function limits(v: unknown, path: string): LimitsPolicy {
  const o = object(v, path, FIELDS.LimitsPolicy);
  const out: LimitsPolicy = {};
  if (o.maxRequestsPerEndpoint !== undefined) out.maxRequestsPerEndpoint = integer(o.maxRequestsPerEndpoint, join(path, 'maxRequestsPerEndpoint'), 1, 1_000_000);
  if (o.maxPendingRequests !== undefined) out.maxPendingRequests = integer(o.maxPendingRequests, join(path, 'maxPendingRequests'), 1, 1_000_000);
  if (o.pendingTimeout !== undefined) {
    const timeout = duration(o.pendingTimeout, join(path, 'pendingTimeout'));
    const ms = parseDuration(timeout);
    if (ms < 1 || ms > MAX_PENDING_TIMEOUT_MS)
      throw new ValidationError(join(path, 'pendingTimeout'), `${describe(timeout)} is not a duration from 1ms to ${formatDuration(MAX_PENDING_TIMEOUT_MS)}`);
    out.pendingTimeout = timeout;
  }
  return out;
}

/**
 * A regular expression of a route match, in JavaScript's syntax (u flag),
 * that must match the whole value. Gateway API promises RE2 semantics: no
 * lookaround, no backreferences, and time linear in the input. The proxy runs
 * it on lib/linear-regexp.ts, never on a backtracking RegExp, so a pattern
 * such as "(a+)+" is accepted and costs linear time; what that matcher
 * cannot run (the two constructs above, inline flags, a count past 1000) is
 * refused here, with what to write instead.
 */
export function routeRegex(v: unknown, path: string): string {
  const s = string(v, path);
  if (s === '') throw new ValidationError(path, 'an empty regular expression matches nothing useful; write a pattern such as "/api/v[0-9]+"');
  if (/\(\?<?[=!]/.test(s)) throw new ValidationError(path, `${describe(s)} uses lookaround ((?=, (?!, (?<=, (?<!), which RE2 syntax lacks; write the pattern without it`);
  if (/(?:^|[^\\])(?:\\\\)*\\(?:[1-9]|k<)/.test(s)) throw new ValidationError(path, `${describe(s)} uses a backreference (\\1, \\k<name>), which RE2 syntax lacks; write the pattern without it`);
  try {
    new RegExp(s, 'u');
  } catch (e) {
    throw new ValidationError(path, `${describe(s)} is not a regular expression (${(e as Error).message.replace(/^Invalid regular expression: /, '')}); fix the pattern, escaping a literal character such as ( or [ with \\`);
  }
  try {
    new LinearRegExp(s);
  } catch (e) {
    if (!(e instanceof LinearRegExpError)) throw e;
    throw new ValidationError(path, `${describe(s)}: ${e.message}`);
  }
  return s;
}

const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function headerName(v: unknown, path: string): string {
  const s = string(v, path);
  if (!HEADER_TOKEN.test(s)) throw new ValidationError(path, `${describe(s)} is not a header name; a name is letters, digits and !#$%&'*+-.^_\`|~ (no ":", so no HTTP/2 pseudo-header, no space)`);
  return s.toLowerCase();
}

/** A record of header names (lowercased, each once) to values checked by `value`. */
function headerRecord(v: unknown, path: string, value: (x: unknown, p: string) => string): Record<string, string> {
  const o = object(v, path, Object.keys(v ?? {}));
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(o)) {
    const name = headerName(k, join(path, k));
    if (name in out) throw new ValidationError(join(path, k), `${describe(k)} names a header already listed (names are case-insensitive); list it once`);
    out[name] = value(x, join(path, k));
  }
  return out;
}

/** A record of query parameter names (case-sensitive) to values checked by `value`. */
function queryRecord(v: unknown, path: string, value: (x: unknown, p: string) => string): Record<string, string> {
  const o = object(v, path, Object.keys(v ?? {}));
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(o)) {
    if (k === '') throw new ValidationError(path, 'a query parameter needs a name');
    out[k] = value(x, join(path, k));
  }
  return out;
}

const PATH_MATCHES = ['pathPrefix', 'pathExact', 'pathRegex'] as const;

function routeMatch(v: unknown, path: string): RouteMatch {
  const m = object(v, path, FIELDS.RouteMatch);
  const out: RouteMatch = {};
  const given = PATH_MATCHES.filter((k) => m[k] !== undefined);
  if (given.length > 1) throw new ValidationError(path, `${given.join(' and ')} are both set; a match takes one of ${PATH_MATCHES.join(', ')} (write two routes for two paths)`);
  if (m.pathPrefix !== undefined) {
    const prefix = string(m.pathPrefix, join(path, 'pathPrefix'));
    if (!prefix.startsWith('/')) throw new ValidationError(join(path, 'pathPrefix'), `${describe(prefix)} must start with "/"`);
    out.pathPrefix = prefix;
  }
  if (m.pathExact !== undefined) {
    const exact = string(m.pathExact, join(path, 'pathExact'));
    if (!exact.startsWith('/') || /[?#]/.test(exact)) throw new ValidationError(join(path, 'pathExact'), `${describe(exact)} must start with "/" and hold no "?" or "#" (the query is not part of the path matched)`);
    out.pathExact = exact;
  }
  if (m.pathRegex !== undefined) out.pathRegex = routeRegex(m.pathRegex, join(path, 'pathRegex'));
  if (m.headers !== undefined) out.headers = headerRecord(m.headers, join(path, 'headers'), string);
  if (m.headerRegex !== undefined) out.headerRegex = headerRecord(m.headerRegex, join(path, 'headerRegex'), routeRegex);
  if (m.queryParams !== undefined) out.queryParams = queryRecord(m.queryParams, join(path, 'queryParams'), string);
  if (m.queryParamRegex !== undefined) out.queryParamRegex = queryRecord(m.queryParamRegex, join(path, 'queryParamRegex'), routeRegex);
  if (m.method !== undefined) out.method = method(m.method, join(path, 'method'));
  return out;
}

function method(v: unknown, path: string): string {
  const s = string(v, path);
  if (!METHOD.test(s)) throw new ValidationError(path, `${describe(s)} is not an HTTP method; methods are case-sensitive, write them as sent (GET, POST)`);
  return s;
}

function headerModifier(v: unknown, path: string): HeaderModifier {
  const o = object(v, path, FIELDS.HeaderModifier);
  const out: HeaderModifier = {};
  const value = (x: unknown, p: string): string => {
    const s = string(x, p);
    if (/[\r\n\0]/.test(s)) throw new ValidationError(p, `${describe(s)} holds a line break or NUL, which no header value may; remove it`);
    return s;
  };
  if (o.set !== undefined) out.set = headerRecord(o.set, join(path, 'set'), value);
  if (o.add !== undefined) out.add = headerRecord(o.add, join(path, 'add'), value);
  if (o.remove !== undefined) out.remove = list(o.remove, join(path, 'remove'), headerName);
  return out;
}

/** A host name as Gateway API's PreciseHostname: DNS labels, no wildcard, no port. */
function preciseHostname(v: unknown, path: string): string {
  const s = string(v, path);
  if (s.length > 253 || !new RegExp(`^(?:${HOST_LABEL}\\.)*${HOST_LABEL}$`).test(s))
    throw new ValidationError(path, `${describe(s)} is not a host name; write a DNS name such as example.org, without a port or wildcard`);
  return s;
}

function pathModifier(v: unknown, path: string): PathModifier {
  const o = object(v, path, FIELDS.PathModifier);
  if ((o.replaceFullPath === undefined) === (o.replacePrefixMatch === undefined))
    throw new ValidationError(path, 'give exactly one of replaceFullPath (the new whole path) and replacePrefixMatch (what replaces the matched prefix)');
  if (o.replaceFullPath !== undefined) {
    const full = string(o.replaceFullPath, join(path, 'replaceFullPath'));
    if (!full.startsWith('/')) throw new ValidationError(join(path, 'replaceFullPath'), `${describe(full)} must start with "/"`);
    return { replaceFullPath: full };
  }
  // "" is a replacement of its own: it removes the matched prefix.
  const prefix = o.replacePrefixMatch === '' ? '' : string(o.replacePrefixMatch, join(path, 'replacePrefixMatch'));
  if (prefix !== '' && !prefix.startsWith('/')) throw new ValidationError(join(path, 'replacePrefixMatch'), `${describe(prefix)} must start with "/" (or be "", which removes the matched prefix)`);
  return { replacePrefixMatch: prefix };
}

const REDIRECT_STATUSES = [301, 302, 303, 307, 308];

function redirect(v: unknown, path: string): RedirectFilter {
  const o = object(v, path, FIELDS.RedirectFilter);
  const out: RedirectFilter = {};
  if (o.scheme !== undefined) out.scheme = oneOf(o.scheme, join(path, 'scheme'), ['http', 'https'] as const);
  if (o.hostname !== undefined) out.hostname = preciseHostname(o.hostname, join(path, 'hostname'));
  if (o.port !== undefined) out.port = port(o.port, join(path, 'port'));
  if (o.path !== undefined) out.path = pathModifier(o.path, join(path, 'path'));
  if (o.statusCode !== undefined) {
    out.statusCode = integer(o.statusCode, join(path, 'statusCode'), 300, 399, 'a redirect status');
    if (!REDIRECT_STATUSES.includes(out.statusCode)) throw new ValidationError(join(path, 'statusCode'), `${out.statusCode} is not a redirect status a route may answer; use one of ${REDIRECT_STATUSES.join(', ')}`);
  }
  return out;
}

function mirror(v: unknown, path: string): MirrorFilter {
  const o = object(v, path, FIELDS.MirrorFilter);
  const out: MirrorFilter = { service: string(o.service, join(path, 'service')) };
  if (out.service === '') throw new ValidationError(join(path, 'service'), 'name the Service to mirror to ("name" or "name.namespace")');
  if (o.port !== undefined) out.port = port(o.port, join(path, 'port'));
  if (o.percent !== undefined) out.percent = number(o.percent, join(path, 'percent'), 0, 100);
  return out;
}

/** A backend's filters: Gateway API allows header modifiers and mirrors there. */
const BACKEND_FILTERS = ['requestHeaders', 'responseHeaders', 'mirrors'] as const;

function routeFilters(v: unknown, path: string, fields: readonly string[] = FIELDS.RouteFilters): RouteFilters {
  const o = object(v, path, fields);
  const out: RouteFilters = {};
  if (o.requestHeaders !== undefined) out.requestHeaders = headerModifier(o.requestHeaders, join(path, 'requestHeaders'));
  if (o.responseHeaders !== undefined) out.responseHeaders = headerModifier(o.responseHeaders, join(path, 'responseHeaders'));
  if (o.redirect !== undefined) out.redirect = redirect(o.redirect, join(path, 'redirect'));
  if (o.rewrite !== undefined) {
    const r = object(o.rewrite, join(path, 'rewrite'), FIELDS.RewriteFilter);
    out.rewrite = {};
    if (r.hostname !== undefined) out.rewrite.hostname = preciseHostname(r.hostname, join(path, 'rewrite.hostname'));
    if (r.path !== undefined) out.rewrite.path = pathModifier(r.path, join(path, 'rewrite.path'));
  }
  if (o.mirrors !== undefined) out.mirrors = list(o.mirrors, join(path, 'mirrors'), mirror);
  if (out.redirect && out.rewrite) throw new ValidationError(path, 'a route cannot both redirect and rewrite (the redirect answers before any rewrite); keep one of redirect and rewrite');
  return out;
}

function weightedBackend(v: unknown, path: string): WeightedBackend {
  const b = object(v, path, FIELDS.WeightedBackend);
  const out: WeightedBackend = { service: string(b.service, join(path, 'service')), weight: integer(b.weight, join(path, 'weight'), 0, 1_000_000, 'a weight') };
  if (b.port !== undefined) out.port = port(b.port, join(path, 'port'));
  if (b.filters !== undefined) {
    if (b.filters !== null && typeof b.filters === 'object' && ('redirect' in b.filters || 'rewrite' in b.filters))
      throw new ValidationError(join(path, 'filters'), 'a backend takes header modifiers and mirrors only; put a redirect or rewrite in the route\'s filters');
    out.filters = routeFilters(b.filters, join(path, 'filters'), BACKEND_FILTERS);
  }
  return out;
}

/** A route of a TrafficPolicy, or with `gateway` one of the Gateway API's, whose backends may be an empty list (its requests get 500). */
function route(v: unknown, path: string, gateway = false): Route {
  const o = object(v, path, FIELDS.Route);
  const out: Route = {};
  if (o.name !== undefined) out.name = string(o.name, join(path, 'name'));
  if (o.match !== undefined) out.match = routeMatch(o.match, join(path, 'match'));
  if (o.backends !== undefined) {
    out.backends = list(o.backends, join(path, 'backends'), weightedBackend);
    // An empty list is a Gateway API rule whose backends all failed to resolve: its requests get 500.
    if ((out.backends.length > 0 || !gateway) && out.backends.every((b) => b.weight === 0))
      throw new ValidationError(join(path, 'backends'), 'at least one backend needs a weight above 0');
  }
  if (o.timeout !== undefined) out.timeout = duration(o.timeout, join(path, 'timeout'));
  if (o.backendTimeout !== undefined) out.backendTimeout = duration(o.backendTimeout, join(path, 'backendTimeout'));
  if (o.retries !== undefined) out.retries = retries(o.retries, join(path, 'retries'));
  if (o.faults !== undefined) out.faults = faults(o.faults, join(path, 'faults'));
  if (o.filters !== undefined) {
    const filters = routeFilters(o.filters, join(path, 'filters'));
    if (filters.redirect && out.backends?.length)
      throw new ValidationError(join(path, 'filters.redirect'), 'a route that redirects answers every request itself and sends none to its backends; remove backends or the redirect');
    for (const which of ['redirect', 'rewrite'] as const) {
      const modifier = filters[which]?.path;
      if (modifier?.replacePrefixMatch !== undefined && (out.match?.pathExact !== undefined || out.match?.pathRegex !== undefined))
        throw new ValidationError(join(path, `filters.${which}.path.replacePrefixMatch`), 'replaces the prefix a pathPrefix match matched, and this route matches pathExact or pathRegex; match with pathPrefix or use replaceFullPath');
    }
    out.filters = filters;
  }
  return out;
}

/** A service's Gateway API routes, per port: each a port of the service, listed once. */
function gatewayRoutes(v: unknown, path: string, ports: readonly ServicePort[]): GatewayPortRoutes[] {
  const out = list(v, path, (x, p) => {
    const o = object(x, p, FIELDS.GatewayPortRoutes);
    return { port: port(o.port, join(p, 'port')), routes: list(o.routes, join(p, 'routes'), (r, rp) => route(r, rp, true), false) };
  });
  const seen = new Set<number>();
  for (const [i, g] of out.entries()) {
    if (!ports.some((sp) => sp.port === g.port)) throw new ValidationError(`${path}[${i}].port`, `${g.port} is not a port of the service; routes attach to one of ${ports.map((sp) => sp.port).join(', ') || '(none)'}`);
    if (seen.has(g.port)) throw new ValidationError(`${path}[${i}].port`, `port ${g.port} is listed twice; put all of its routes in one list`);
    seen.add(g.port);
  }
  return out;
}

/** The fields of a traffic policy, its name aside; the control plane's TrafficPolicy spec has the same beside its targetRef. */

function trafficPolicy(v: unknown, path: string): TrafficPolicySpec {
  const o = object(v, path, ['name', ...FIELDS.TrafficPolicy]);
  const out: TrafficPolicySpec = {};
  if (o.name !== undefined) out.name = string(o.name, join(path, 'name'));
  if (o.routes !== undefined) out.routes = list(o.routes, join(path, 'routes'), route);
  if (o.timeout !== undefined) out.timeout = duration(o.timeout, join(path, 'timeout'));
  if (o.retries !== undefined) out.retries = retries(o.retries, join(path, 'retries'));
  if (o.circuitBreaker !== undefined) out.circuitBreaker = circuitBreaker(o.circuitBreaker, join(path, 'circuitBreaker'));
  if (o.faults !== undefined) out.faults = faults(o.faults, join(path, 'faults'));
  if (o.limits !== undefined) out.limits = limits(o.limits, join(path, 'limits'));
  return out;
}

function service(v: unknown, path: string): ServiceConfig {
  const o = object(v, path, FIELDS.ServiceConfig);
  const out: ServiceConfig = {
    name: string(o.name, join(path, 'name')),
    namespace: string(o.namespace, join(path, 'namespace')),
    clusterIPs: list(o.clusterIPs, join(path, 'clusterIPs'), ip),
    ports: list(o.ports, join(path, 'ports'), servicePort),
    endpoints: list(o.endpoints, join(path, 'endpoints'), endpoint),
  };
  const seen = new Set<number>();
  for (const [i, p] of out.ports.entries()) {
    if (seen.has(p.port)) throw new ValidationError(join(path, `ports[${i}].port`), `port ${p.port} is listed twice`);
    seen.add(p.port);
  }
  if (o.trafficPolicy !== undefined) out.trafficPolicy = trafficPolicy(o.trafficPolicy, join(path, 'trafficPolicy'));
  if (o.gatewayRoutes !== undefined) out.gatewayRoutes = gatewayRoutes(o.gatewayRoutes, join(path, 'gatewayRoutes'), out.ports);
  return out;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const METHOD = /^[A-Z][A-Z0-9_-]*$/;

/** A path of a rule: begins with "/", and written as normalizePath reads requests (lib/url-path.ts), or it could never match. */
function rulePath(v: unknown, path: string): string {
  const s = string(v, path);
  if (!s.startsWith('/')) throw new ValidationError(path, `${describe(s)} must start with "/"`);
  const normal = normalizePath(s);
  if (normal !== s)
    throw new ValidationError(path, `${describe(s)} is not a normalized path (requests are matched without their query, with "." and ".." segments resolved, repeated "/" merged and unreserved characters decoded); write ${JSON.stringify(normal)}`);
  return s;
}

function authorizationRule(v: unknown, path: string): AuthorizationRule {
  const o = object(v, path, FIELDS.AuthorizationRule);
  const out: AuthorizationRule = {};
  if (o.identities !== undefined) out.identities = list(o.identities, join(path, 'identities'), spiffeId);
  if (o.namespaces !== undefined) out.namespaces = list(o.namespaces, join(path, 'namespaces'), string);
  if (o.serviceAccounts !== undefined)
    out.serviceAccounts = list(o.serviceAccounts, join(path, 'serviceAccounts'), (x, p) => {
      const s = string(x, p);
      if (!/^[^/]+\/[^/]+$/.test(s)) throw new ValidationError(p, `${describe(s)} must be written <namespace>/<serviceaccount>`);
      return s;
    });
  if (o.ports !== undefined) out.ports = list(o.ports, join(path, 'ports'), port);
  if (o.methods !== undefined)
    out.methods = list(o.methods, join(path, 'methods'), method);
  if (o.paths !== undefined) out.paths = list(o.paths, join(path, 'paths'), rulePath);
  if (o.pathPrefixes !== undefined) out.pathPrefixes = list(o.pathPrefixes, join(path, 'pathPrefixes'), rulePath);
  if (o.headers !== undefined) {
    const h = object(o.headers, join(path, 'headers'), Object.keys(o.headers as object));
    out.headers = Object.fromEntries(
      Object.entries(h).map(([k, x]) => {
        const name = k.toLowerCase();
        if (!HEADER_NAME.test(name)) throw new ValidationError(join(path, `headers.${k}`), `${describe(k)} is not a header name`);
        return [name, string(x, join(path, `headers.${k}`))];
      }),
    );
  }
  return out;
}

/** An AuthorizationPolicy as the proxy runs it; the control plane's object has the same beside its targetRef. */
function authorizationPolicy(v: unknown, path: string): AuthorizationPolicySpec {
  const a = object(v, path, FIELDS.AuthorizationPolicy);
  return {
    name: string(a.name, join(path, 'name')),
    ...(a.action !== undefined ? { action: oneOf(a.action, join(path, 'action'), AUTHORIZATION_ACTIONS) } : {}),
    rules: list(a.rules, join(path, 'rules'), authorizationRule, false),
  };
}

/** `{"8080": "PERMISSIVE"}`: an mTLS mode per port (keys are port numbers). */
function portMtlsModes(v: unknown, path: string): Record<string, MtlsMode> {
  const o = object(v, path, Object.keys(v ?? {}));
  const out: Record<string, MtlsMode> = {};
  for (const [k, mode] of Object.entries(o)) {
    const n = /^\d{1,5}$/.test(k) ? Number(k) : 0;
    if (n < 1 || n > 65535) throw new ValidationError(join(path, k), `${describe(k)} is not a port (1-65535)`);
    out[String(n)] = oneOf(mode, join(path, k), MTLS_MODES);
  }
  return out;
}

function inbound(v: unknown, path: string): InboundConfig {
  const o = object(v ?? {}, path, FIELDS.InboundConfig);
  const out: InboundConfig = {};
  if (o.mtlsMode !== undefined) out.mtlsMode = oneOf(o.mtlsMode, join(path, 'mtlsMode'), MTLS_MODES);
  if (o.portMtlsModes !== undefined) out.portMtlsModes = portMtlsModes(o.portMtlsModes, join(path, 'portMtlsModes'));
  if (o.defaultPolicy !== undefined) out.defaultPolicy = oneOf(o.defaultPolicy, join(path, 'defaultPolicy'), DEFAULT_INBOUND_POLICIES);
  if (o.opaquePorts !== undefined) out.opaquePorts = list(o.opaquePorts, join(path, 'opaquePorts'), port);
  if (o.authorization !== undefined) out.authorization = list(o.authorization, join(path, 'authorization'), authorizationPolicy);
  return out;
}

/** Validates `doc` (parsed JSON or YAML) and returns it with defaults filled in. */
export function parseProxyConfig(doc: unknown): ProxyConfig {
  const o = object(doc, '', FIELDS.ProxyConfig);
  if (o.apiVersion !== CONFIG_API_VERSION) throw new ValidationError('apiVersion', `${describe(o.apiVersion)} is not ${CONFIG_API_VERSION}`);
  if (o.kind !== CONFIG_KIND) throw new ValidationError('kind', `${describe(o.kind)} is not ${CONFIG_KIND}`);
  const config: ProxyConfig = {
    apiVersion: CONFIG_API_VERSION,
    kind: CONFIG_KIND,
    version: o.version === undefined ? '0' : string(String(o.version), 'version'),
    mesh: mesh(o.mesh, 'mesh'),
    services: list(o.services, 'services', service),
    inbound: inbound(o.inbound, 'inbound'),
  };
  if (o.telemetry !== undefined) config.telemetry = telemetryOverrides(o.telemetry, 'telemetry');
  if (o.egress !== undefined) config.egress = egress(o.egress, 'egress');
  if (o.trustBundle !== undefined) {
    const pem = string(o.trustBundle, 'trustBundle');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ValidationError('trustBundle', 'expected PEM certificates');
    config.trustBundle = pem;
  }
  if (o.retiredRoots !== undefined) config.retiredRoots = list(o.retiredRoots, 'retiredRoots', string);
  const byAddress = new Map<string, string>();
  for (const [i, s] of config.services.entries()) {
    for (const ipAddr of s.clusterIPs) {
      for (const p of s.ports) {
        const key = `${ipAddr}:${p.port}`;
        const other = byAddress.get(key);
        if (other) throw new ValidationError(`services[${i}]`, `${key} is claimed by both ${other} and ${s.name}.${s.namespace}`);
        byAddress.set(key, `${s.name}.${s.namespace}`);
      }
    }
  }
  return config;
}

export {
  mesh as parseMeshSettings,
  servicePort as parseServicePort,
  endpoint as parseEndpoint,
  trafficPolicy as parseTrafficPolicy,
  authorizationRule as parseAuthorizationRule,
  authorizationPolicy as parseAuthorizationPolicy,
  portMtlsModes as parsePortMtlsModes,
  tracing as parseTracingSettings,
  tracingFields as parseTracingOverride,
  accessLogFields as parseAccessLogOverride,
  egress as parseEgressSettings,
  egressRule as parseEgressRule,
  egressHost as parseEgressHost,
  egressCidr as parseEgressCidr,
};
