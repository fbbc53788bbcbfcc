// The proxy's configuration: what the control plane streams to each proxy and
// what `tsmesh proxy --config-file` reads. One format for both, readable as
// JSON or YAML. Durations are strings ("250ms", "10s"); see lib/duration.ts.
import type { AuthorizationAction, DefaultInboundPolicy, MtlsMode, PortProtocol } from './vocabulary.js';
import type { AccessLogMode } from './vocabulary.js';
import type { EgressMode } from './vocabulary.js';

export const CONFIG_API_VERSION = 'tsmesh.io/v1alpha1';
export const CONFIG_KIND = 'ProxyConfig';

export type { AuthorizationAction, DefaultInboundPolicy, EgressMode, MtlsMode, PortProtocol } from './vocabulary.js';

export interface ProxyConfig {
  apiVersion: typeof CONFIG_API_VERSION;
  kind: typeof CONFIG_KIND;
  /** Opaque, changes with every snapshot; shown by /config and acknowledged to the control plane. */
  version: string;
  mesh: MeshSettings;
  /** Services this proxy may call. */
  services: ServiceConfig[];
  /** How this proxy treats connections to its own workload. */
  inbound: InboundConfig;
  /** PEM roots the mesh trusts now; streamed so a new root reaches proxies without restarts. */
  trustBundle?: string;
  /**
   * SHA-256 fingerprints (AA:BB:...) of roots being retired by a root
   * rotation: a proxy whose certificate chains to one renews it at once.
   */
  retiredRoots?: string[];
  /** This workload's telemetry, laid over mesh.tracing: its namespace's annotations, then its own. */
  telemetry?: TelemetryOverrides;
  /** This workload's egress over mesh.egress: its mode replaces the mesh's, its entries are added to the mesh's. */
  egress?: EgressSettings;
}

export interface MeshSettings {
  trustDomain: string;
  mtlsMode: MtlsMode;
  /**
   * Who may call a workload no ALLOW policy selects. Unset: all-authenticated,
   * or all-unauthenticated where the mTLS mode is PERMISSIVE (PERMISSIVE has
   * always let plaintext callers through).
   */
  defaultInboundPolicy?: DefaultInboundPolicy;
  /** The budget retries draw from when a policy sets none. */
  retryBudget: RetryBudget;
  /** Span export (tsmesh-config key tracing); absent: none, and trace context passes untouched. */
  tracing?: TracingSettings;
  /** Access logs (tsmesh-config key accessLog); absent: off. */
  accessLog?: AccessLogSettings;
  /** Egress control (tsmesh-config key egress); absent: allow-all, no entries. */
  egress?: EgressSettings;
}

/**
 * Outbound connections to destinations outside the mesh. `mode`
 * (EGRESS_MODES, default allow-all): in registry-only, a connection no entry
 * of `allow` names is refused. In either mode the entries name destinations
 * in tsmesh_egress_connections_total, and an entry may have the proxy
 * originate TLS.
 */
export interface EgressSettings {
  mode?: EgressMode;
  allow?: EgressRule[];
}

/**
 * A destination outside the mesh: a connection matches when its port is one
 * of `ports` (none listed: any port) and its TLS SNI or HTTP Host is one of
 * `hosts` ("api.example.com", or "*.example.com" for any name under it) or
 * the address it was opened to is in one of `cidrs`.
 */
export interface EgressRule {
  /** Its name in metrics and logs. */
  name: string;
  hosts?: string[];
  cidrs?: string[];
  ports?: number[];
  /** Plain HTTP the app sends to this destination leaves the proxy as HTTPS. */
  originateTls?: EgressTls;
}

/** TLS the proxy originates: to `port` of the address the app dialled, with SNI the request's host, the server verified against `caBundle` or `caFile`, else the system's roots. */
export interface EgressTls {
  /** Default 443. */
  port?: number;
  /** PEM roots. */
  caBundle?: string;
  /** A PEM file the proxy reads (local meshes; in Kubernetes give caBundle). */
  caFile?: string;
}

/**
 * Span export over OTLP/HTTP. Each proxy then exports a client span per
 * outbound request and a server span per inbound one, and becomes the parent
 * of what follows in the trace context it passes on. A request whose caller
 * sampled it is sampled, one whose caller did not is not; a request without
 * context starts a trace, sampled at `sampling`.
 */
export interface TracingSettings {
  export: boolean;
  /** The collector's OTLP/HTTP traces URL (http://collector:4318/v1/traces); needed once export is on. */
  collector?: string;
  /** The share of new traces (requests without context) sampled, 0 to 1. */
  sampling: number;
}

/**
 * One JSON line per request on the proxy's stdout (the proxy's own logs go
 * to stderr). mode (ACCESS_LOG_MODES): off; all; errors (a 5xx, the
 * proxy's own answer, a gRPC server failure, a request its caller gave up
 * on); sampled (a `sampling` share of requests, errors or not).
 */
export interface AccessLogSettings {
  mode: AccessLogMode;
  /** The share of requests logged in sampled mode, 0 to 1. */
  sampling: number;
  /** Whether the path is logged with its query (queries often carry tokens: stripped unless set). */
  query: boolean;
}

/** A workload's telemetry settings over the mesh's: each field set replaces the mesh's. */
export interface TelemetryOverrides {
  tracing?: Partial<TracingSettings>;
  accessLog?: Partial<AccessLogSettings>;
}

export const DEFAULT_TRACING: TracingSettings = { export: false, sampling: 0.01 };
export const DEFAULT_ACCESS_LOG: AccessLogSettings = { mode: 'off', sampling: 0.01, query: false };

/**
 * Retries may add at most `ratio` of the requests, a request's share expiring
 * after `ttl` and spent no faster than 1.25 x `ratio` of the last second's
 * requests, plus `minRetriesPerSecond`, a rate that holds at most one
 * second's worth.
 */
export interface RetryBudget {
  ratio: number;
  minRetriesPerSecond: number;
  ttl: string;
}

export interface ServiceConfig {
  name: string;
  namespace: string;
  /** ClusterIPs (IPv4 and/or IPv6) apps connect to; none for a headless Service. */
  clusterIPs: string[];
  /** None for a headless Service without TCP ports, listed for its endpoints' identities. */
  ports: ServicePort[];
  /**
   * Its endpoints, ready or not. A meshed one is also reached by its own
   * address (a pod IP, from a headless Service's DNS), over mTLS with its
   * identity: the proxy indexes them itself (proxy/config/table.ts).
   */
  endpoints: Endpoint[];
  trafficPolicy?: TrafficPolicySpec;
  /**
   * Gateway API routes (HTTPRoute, GRPCRoute) whose parentRefs name this
   * Service, as this proxy's namespace sees them (a consumer route in the
   * caller's namespace replaces the producer's). Per service port: every
   * (rule, match) pair of every route attached to the port, flattened into
   * one list in the Gateway API's precedence order, so the proxy takes the
   * first that matches. Where a port has routes here they replace the
   * TrafficPolicy's `routes` on it; the policy's other fields still apply.
   */
  gatewayRoutes?: GatewayPortRoutes[];
}

export interface GatewayPortRoutes {
  /** The service port these routes attach to. */
  port: number;
  routes: Route[];
}

export interface ServicePort {
  port: number;
  name?: string;
  protocol: PortProtocol;
  /** The port on the endpoints; an endpoint may override it by service port name in `ports`. */
  targetPort: number;
}

export interface Endpoint {
  address: string;
  /** The SPIFFE ID its sidecar must present; absent: the endpoint is not meshed, is reached in plain TCP, and a call to its own address passes through. */
  identity?: string;
  /** Per service port (by name, or by number as a string), when the target port differs from the service's. */
  ports?: Record<string, number>;
  /** Relative weight for load balancing (default 1). */
  weight?: number;
  /** false while terminating or not ready: receives no new requests. Default true. */
  ready?: boolean;
  /**
   * Ports of a meshed endpoint its sidecar does not capture (its pod's
   * tsmesh.io/skip-inbound-ports, as its tsmesh-init applied them), each "25"
   * or "8000-8100": reached in plain TCP, as an endpoint without a sidecar.
   * The proxy's admin port is never captured and need not be listed.
   */
  skipInboundPorts?: string[];
}

export interface InboundConfig {
  /** Overrides mesh.mtlsMode for this workload (its namespace's or its own). */
  mtlsMode?: MtlsMode;
  /** Overrides mtlsMode on these ports of the workload (keys: port numbers). */
  portMtlsModes?: Record<string, MtlsMode>;
  /** Overrides mesh.defaultInboundPolicy for this workload (its namespace's or its own). */
  defaultPolicy?: DefaultInboundPolicy;
  /** Ports served as opaque TCP (no protocol detection). */
  opaquePorts?: number[];
  /** Policies that select this workload; none: the default inbound policy decides. */
  authorization?: AuthorizationPolicySpec[];
}

export interface TrafficPolicySpec {
  /** The policy's name, for status and metrics. */
  name?: string;
  /** First match wins; a request that matches none goes to the service itself. */
  routes?: Route[];
  timeout?: string;
  retries?: RetryPolicy;
  circuitBreaker?: CircuitBreakerPolicy;
  faults?: FaultPolicy;
  /** Bounds on requests in flight and waiting (Envoy's circuit-breaker thresholds); defaults apply without it. */
  limits?: LimitsPolicy;
}

/**
 * How much a service's callers may ask of it at once, per calling proxy. A
 * request beyond `maxRequestsPerEndpoint` on every endpoint waits, at most
 * `pendingTimeout`, among at most `maxPendingRequests` others; past either
 * bound it gets 503 with `x-tsmesh-error: overloaded` at once, never a silent
 * queue. A caller that goes away leaves the queue.
 */
export interface LimitsPolicy {
  /** Requests in flight to one endpoint of the service at once (default 256). */
  maxRequestsPerEndpoint?: number;
  /** Requests waiting for an endpoint under its limit at once (default 256). */
  maxPendingRequests?: number;
  /** How long a request may wait for one (default "1s"). */
  pendingTimeout?: string;
}

export interface Route {
  name?: string;
  match?: RouteMatch;
  /** Weighted split between services ("name" or "name.namespace"); default: the service itself. An empty list: every request gets 500 (a Gateway API rule whose backends all failed to resolve). */
  backends?: WeightedBackend[];
  /** The whole request, retries included (Gateway API timeouts.request). */
  timeout?: string;
  /** Each attempt to a backend (Gateway API timeouts.backendRequest); retries may set a shorter perTryTimeout. */
  backendTimeout?: string;
  retries?: RetryPolicy;
  faults?: FaultPolicy;
  /** Applied in this order: redirect (answers at once, no backend), requestHeaders, rewrite, mirrors; responseHeaders on the way back. */
  filters?: RouteFilters;
}

/** Every field that is set must match. Paths are compared as the request gives them, before any rewrite. */
export interface RouteMatch {
  /** On whole path segments ("/api" matches "/api", "/api/x", not "/apis"). */
  pathPrefix?: string;
  pathExact?: string;
  /** A JavaScript regular expression that must match the whole path (without the query). */
  pathRegex?: string;
  /** Exact header values (names case-insensitive). */
  headers?: Record<string, string>;
  /** Header values that must match a whole regular expression (names case-insensitive). */
  headerRegex?: Record<string, string>;
  /** Exact query parameter values (names case-sensitive; the first occurrence of a name counts). */
  queryParams?: Record<string, string>;
  queryParamRegex?: Record<string, string>;
  /** An HTTP method, upper case. */
  method?: string;
}

/** Gateway API's HTTPRoute filters, one object per kind. */
export interface RouteFilters {
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  redirect?: RedirectFilter;
  rewrite?: RewriteFilter;
  /** Copies of each request, sent without waiting; their answers are discarded and they never draw on a retry budget. */
  mirrors?: MirrorFilter[];
}

/** Names case-insensitive; set replaces, add appends, remove deletes. */
export interface HeaderModifier {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

/** Gateway API RequestRedirect: each unset field keeps the request's own. */
export interface RedirectFilter {
  scheme?: 'http' | 'https';
  hostname?: string;
  port?: number;
  path?: PathModifier;
  /** 301, 302, 303, 307 or 308 (default 302). */
  statusCode?: number;
}

/** Gateway API URLRewrite. */
export interface RewriteFilter {
  hostname?: string;
  path?: PathModifier;
}

/** One of the two; replacePrefixMatch replaces the route's matched pathPrefix. */
export interface PathModifier {
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface MirrorFilter {
  /** "name" or "name.namespace". */
  service: string;
  /** The backend Service's port; default: the same port as the request's. */
  port?: number;
  /** Share of requests mirrored, 0-100 (default 100). */
  percent?: number;
}

export interface WeightedBackend {
  service: string;
  weight: number;
  /** The backend Service's port; default: the same port number, else the same port name, else its only port. */
  port?: number;
  /** Backend-level filters (Gateway API allows header modifiers and mirrors here). */
  filters?: RouteFilters;
}

export interface RetryPolicy {
  /** Total tries including the first. */
  attempts: number;
  perTryTimeout?: string;
  backoff?: { base: string; max: string };
  /** RETRY_CONDITIONS (contract/vocabulary.ts), or status codes such as "503". */
  retryOn?: string[];
  budget?: RetryBudget;
}

export interface CircuitBreakerPolicy {
  consecutiveFailures?: number;
  failureRate?: { threshold: number; window: string; minRequests: number };
  ejectionTime?: string;
  /** At most this share of the endpoints is ejected at once (0-100). */
  maxEjectionPercent?: number;
  /**
   * Whether a request its caller gave up on (closed the connection, reset
   * the stream) before the endpoint answered counts as a failure of the
   * endpoint, as a mesh timeout does: callers giving up is how a hung
   * endpoint shows (default true).
   */
  countCancellations?: boolean;
}

export interface FaultPolicy {
  abort?: { percent: number; status: number };
  delay?: { percent: number; duration: string };
}

export interface AuthorizationPolicySpec {
  name: string;
  /** Default ALLOW. DENY rules are tried first; AUDIT rules only log and count. */
  action?: AuthorizationAction;
  /** A call matches the policy when any rule matches it. */
  rules: AuthorizationRule[];
}

/**
 * Within one rule, a call must match every field that is set, and a field
 * matches when any of its values does. The caller (from): identities,
 * namespaces, serviceAccounts, which a caller without a mesh identity never
 * matches. The call (to): ports, and for HTTP requests methods, paths,
 * pathPrefixes and headers; a rule with any of these never matches an
 * opaque TCP connection.
 */
export interface AuthorizationRule {
  /** Whole SPIFFE IDs. */
  identities?: string[];
  /** Namespaces of this mesh's trust domain. */
  namespaces?: string[];
  /** "namespace/serviceaccount", of this mesh's trust domain. */
  serviceAccounts?: string[];
  /** Ports of the workload. */
  ports?: number[];
  /** HTTP methods, as sent ("GET"). */
  methods?: string[];
  /** Exact paths, matched on the normalized path without its query. */
  paths?: string[];
  /** Path prefixes on whole segments ("/api" matches /api and /api/v1, not /apis), normalized likewise. */
  pathPrefixes?: string[];
  /** Exact header values (names case-insensitive); every one listed must be present. */
  headers?: Record<string, string>;
}

export const DEFAULT_RETRY_BUDGET: RetryBudget = { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' };

/**
 * A list of every field of T, checked by the compiler both ways: a name that
 * is not a field, or a field of T missing from the list, is a type error.
 */
function fieldsOf<T>() {
  return <const L extends readonly (keyof T & string)[]>(list: L & ([Exclude<keyof T, L[number]>] extends [never] ? unknown : { missingField: Exclude<keyof T, L[number]> })): L => list;
}

/**
 * The fields of each object of the config. The validator (contract/validate.ts)
 * accepts these and refuses any other; the CRDs' schemas (manifests/crds.yaml)
 * list the same, which contract/vocabulary.test.ts checks. A field added to an
 * interface above fails to compile until it is listed here.
 */
export const FIELDS = {
  ProxyConfig: fieldsOf<ProxyConfig>()(['apiVersion', 'kind', 'version', 'mesh', 'services', 'inbound', 'trustBundle', 'retiredRoots', 'telemetry', 'egress']),
  MeshSettings: fieldsOf<MeshSettings>()(['trustDomain', 'mtlsMode', 'defaultInboundPolicy', 'retryBudget', 'tracing', 'accessLog', 'egress']),
  EgressSettings: fieldsOf<EgressSettings>()(['mode', 'allow']),
  EgressRule: fieldsOf<EgressRule>()(['name', 'hosts', 'cidrs', 'ports', 'originateTls']),
  EgressTls: fieldsOf<EgressTls>()(['port', 'caBundle', 'caFile']),
  TracingSettings: fieldsOf<TracingSettings>()(['export', 'collector', 'sampling']),
  AccessLogSettings: fieldsOf<AccessLogSettings>()(['mode', 'sampling', 'query']),
  TelemetryOverrides: fieldsOf<TelemetryOverrides>()(['tracing', 'accessLog']),
  RetryBudget: fieldsOf<RetryBudget>()(['ratio', 'minRetriesPerSecond', 'ttl']),
  ServiceConfig: fieldsOf<ServiceConfig>()(['name', 'namespace', 'clusterIPs', 'ports', 'endpoints', 'trafficPolicy', 'gatewayRoutes']),
  GatewayPortRoutes: fieldsOf<GatewayPortRoutes>()(['port', 'routes']),
  ServicePort: fieldsOf<ServicePort>()(['port', 'name', 'protocol', 'targetPort']),
  Endpoint: fieldsOf<Endpoint>()(['address', 'identity', 'ports', 'weight', 'ready', 'skipInboundPorts']),
  InboundConfig: fieldsOf<InboundConfig>()(['mtlsMode', 'portMtlsModes', 'defaultPolicy', 'opaquePorts', 'authorization']),
  /** A TrafficPolicy's spec carries these beside targetRef; `name` comes from its metadata. */
  TrafficPolicy: fieldsOf<Omit<TrafficPolicySpec, 'name'>>()(['routes', 'timeout', 'retries', 'circuitBreaker', 'faults', 'limits']),
  LimitsPolicy: fieldsOf<LimitsPolicy>()(['maxRequestsPerEndpoint', 'maxPendingRequests', 'pendingTimeout']),
  Route: fieldsOf<Route>()(['name', 'match', 'backends', 'timeout', 'backendTimeout', 'retries', 'faults', 'filters']),
  RouteMatch: fieldsOf<RouteMatch>()(['pathPrefix', 'pathExact', 'pathRegex', 'headers', 'headerRegex', 'queryParams', 'queryParamRegex', 'method']),
  RouteFilters: fieldsOf<RouteFilters>()(['requestHeaders', 'responseHeaders', 'redirect', 'rewrite', 'mirrors']),
  HeaderModifier: fieldsOf<HeaderModifier>()(['set', 'add', 'remove']),
  RedirectFilter: fieldsOf<RedirectFilter>()(['scheme', 'hostname', 'port', 'path', 'statusCode']),
  RewriteFilter: fieldsOf<RewriteFilter>()(['hostname', 'path']),
  PathModifier: fieldsOf<PathModifier>()(['replaceFullPath', 'replacePrefixMatch']),
  MirrorFilter: fieldsOf<MirrorFilter>()(['service', 'port', 'percent']),
  WeightedBackend: fieldsOf<WeightedBackend>()(['service', 'weight', 'port', 'filters']),
  RetryPolicy: fieldsOf<RetryPolicy>()(['attempts', 'perTryTimeout', 'backoff', 'retryOn', 'budget']),
  Backoff: fieldsOf<NonNullable<RetryPolicy['backoff']>>()(['base', 'max']),
  CircuitBreakerPolicy: fieldsOf<CircuitBreakerPolicy>()(['consecutiveFailures', 'failureRate', 'ejectionTime', 'maxEjectionPercent', 'countCancellations']),
  FailureRate: fieldsOf<NonNullable<CircuitBreakerPolicy['failureRate']>>()(['threshold', 'window', 'minRequests']),
  FaultPolicy: fieldsOf<FaultPolicy>()(['abort', 'delay']),
  AbortFault: fieldsOf<NonNullable<FaultPolicy['abort']>>()(['percent', 'status']),
  DelayFault: fieldsOf<NonNullable<FaultPolicy['delay']>>()(['percent', 'duration']),
  AuthorizationPolicy: fieldsOf<AuthorizationPolicySpec>()(['name', 'action', 'rules']),
  AuthorizationRule: fieldsOf<AuthorizationRule>()(['identities', 'namespaces', 'serviceAccounts', 'ports', 'methods', 'paths', 'pathPrefixes', 'headers']),
} as const;
