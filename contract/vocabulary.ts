// Every enumerated value of the mesh, once: a `const` array each, with the
// union type derived from it. Validators, the CRDs (manifests/crds.yaml),
// metrics labels and the proxy's layers all take their values from here, so
// a new value is added in one place and the compiler (plus
// contract/vocabulary.test.ts, which checks the CRDs) finds the rest.

/** How a workload's proxy treats plaintext connections: refused, or passed through. */
export const MTLS_MODES = ['STRICT', 'PERMISSIVE'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

/**
 * Who may call a workload where no ALLOW AuthorizationPolicy selects it, as
 * Linkerd's default inbound policy: callers with a mesh identity, every
 * caller (plaintext too, where the mTLS mode lets it in), or nobody.
 */
export const DEFAULT_INBOUND_POLICIES = ['all-authenticated', 'all-unauthenticated', 'deny'] as const;
export type DefaultInboundPolicy = (typeof DEFAULT_INBOUND_POLICIES)[number];

/**
 * What an AuthorizationPolicy does with the calls its rules match: ALLOW
 * them (once one ALLOW policy selects a workload, nothing else is allowed),
 * DENY them (before any ALLOW), or AUDIT them (log and count them as denied,
 * deny nothing: a DENY policy tried out first).
 */
export const AUTHORIZATION_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;
export type AuthorizationAction = (typeof AUTHORIZATION_ACTIONS)[number];

/**
 * What a sidecar does with an outbound connection to a destination outside
 * the mesh (no Service of the config, no meshed pod), as Istio's
 * outboundTrafficPolicy ALLOW_ANY and REGISTRY_ONLY: allow-all passes it on;
 * registry-only passes it on only where an egress allow-list entry names it
 * (by host, SNI or Host, or by CIDR, and port), and refuses the rest.
 */
export const EGRESS_MODES = ['allow-all', 'registry-only'] as const;
export type EgressMode = (typeof EGRESS_MODES)[number];

/** The `decision` of tsmesh_egress_connections_total. */
export const EGRESS_DECISIONS = ['allowed', 'denied'] as const;
export type EgressDecision = (typeof EGRESS_DECISIONS)[number];

/** auto: detect HTTP/1.1 or HTTP/2 from the first bytes; tcp: opaque, never inspected. */
export const PORT_PROTOCOLS = ['auto', 'http', 'http2', 'tcp'] as const;
export type PortProtocol = (typeof PORT_PROTOCOLS)[number];

/**
 * A Service port's appProtocol (or its name's prefix, as Istio reads
 * `http-web`, `grpc-api`, `tcp-db`) -> how the proxy carries it; anything
 * else is auto. TLS and HTTPS are the app's own TLS: opaque to the proxy, and
 * so is WebSocket over TLS (wss). WebSocket (ws) begins as an HTTP/1.1
 * Upgrade, which the HTTP path carries (routing, authorization and metrics
 * see the upgrade request, then the bytes are spliced), as Istio maps it to
 * HTTP.
 */
export const APP_PROTOCOLS: ReadonlyMap<string, PortProtocol> = new Map<string, PortProtocol>([
  ['http', 'http'],
  ['kubernetes.io/ws', 'http'],
  ['http2', 'http2'],
  ['h2c', 'http2'],
  ['kubernetes.io/h2c', 'http2'],
  ['grpc', 'http2'],
  ['tcp', 'tcp'],
  ['tls', 'tcp'],
  ['https', 'tcp'],
  ['kubernetes.io/wss', 'tcp'],
]);

/**
 * The retryOn conditions of gRPC calls, Envoy's names: a trailers-only answer
 * (grpc-status in the head) with that status, whatever its HTTP status.
 */
export const GRPC_RETRY_CONDITIONS = ['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'] as const;
export type GrpcRetryCondition = (typeof GRPC_RETRY_CONDITIONS)[number];

/**
 * retryOn conditions by name (a status code such as "503" is one too):
 *   connect-failure  the endpoint was never reached
 *   reset            the connection broke before a response, or a per-try timeout
 *   gateway-error    502, 503, 504, plus connect failures, resets and per-try timeouts
 *   5xx              any 5xx, plus connect failures, resets and per-try timeouts
 *   cancelled, deadline-exceeded, internal, resource-exhausted, unavailable
 *                    a gRPC call answered that status (GRPC_RETRY_CONDITIONS)
 */
export const RETRY_CONDITIONS = ['5xx', 'gateway-error', 'connect-failure', 'reset', ...GRPC_RETRY_CONDITIONS] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];
const STATUS_CONDITION = /^[1-5]\d\d$/;

/** Whether `s` is a retryOn value: a named condition or a status code. */
export function isRetryOn(s: string): boolean {
  return (RETRY_CONDITIONS as readonly string[]).includes(s) || STATUS_CONDITION.test(s);
}

/** The response header of an answer the proxy made itself; its value is a LocalError. */
export const ERROR_HEADER = 'x-tsmesh-error';

/** On a 403 `denied`: what denied it, an AuthorizationPolicy's name or `default:<default inbound policy>`. */
export const POLICY_HEADER = 'x-tsmesh-policy';

/**
 * Request headers the inbound proxy sets for the app: the caller's verified
 * SPIFFE ID (as Linkerd's l5d-client-id), and the same as Envoy's
 * x-forwarded-client-cert (`By=<this workload>;Hash=<SHA-256 of the
 * caller's certificate>;URI=<the caller's SPIFFE ID>`). Whatever a caller
 * sent in them is removed first; a caller without a mesh identity gets
 * neither.
 */
export const CLIENT_ID_HEADER = 'x-tsmesh-client-id';
export const CLIENT_CERT_HEADER = 'x-forwarded-client-cert';

/** Why the proxy answered a request itself: the value of ERROR_HEADER and the `error` label of tsmesh_http_errors_total. */
export const LOCAL_ERRORS = {
  'no-route': 'the connection matched no service of the config (503)',
  'no-backend': "a route's backend is not a known service on this port, or the route has no backends (500)",
  'no-route-match': "the service port has Gateway API routes and none matched the request (404)",
  'no-endpoints': 'the service has no ready endpoint (503)',
  'circuit-open': 'every endpoint is ejected by the circuit breaker (503)',
  overloaded: 'the limits of the traffic policy turned the request away (503)',
  timeout: 'the route or per-try timeout passed (504)',
  'response-head-timeout': 'no response head came within the response head timeout of the request being sent (504)',
  'connect-failure': 'no connection to the endpoint (503)',
  'upstream-reset': 'the connection to the endpoint broke before the response (502)',
  'bad-response': 'the endpoint or the app sent a response the proxy will not read: a malformed head or body framing, or a 101 nobody asked for (502)',
  'fault-injected': 'an abort fault of the traffic policy (its status)',
  denied: 'authorization policy denied the caller (403)',
  'mtls-required': 'plaintext to a workload in STRICT mode (403)',
  'app-refused': 'the app refused the connection: not started, or stopping (503)',
  'app-unavailable': 'the app did not answer (502)',
  'proxy-error': 'an unexpected error in the proxy (502)',
  'egress-denied': 'the destination is outside the mesh and no egress allow-list entry names it, in registry-only egress mode (403)',
  'egress-tls-failed': 'the TLS the proxy originates for an egress entry failed: no handshake, or the server certificate did not verify (502)',
  'bad-request': 'the request could not be read: malformed, against HTTP/1.1\'s rules, or too slow (400, 408, 431, 501)',
} as const;
export type LocalError = keyof typeof LOCAL_ERRORS;
export const LOCAL_ERROR_NAMES = Object.keys(LOCAL_ERRORS) as LocalError[];

/** The `error` of tsmesh_http_errors_total for a request its caller abandoned before the answer. */
export const CANCELLED = 'cancelled';

/** The `limit` of tsmesh_overload_rejections_total: which bound turned a request away. */
export const OVERLOAD_LIMITS = ['max-pending-requests', 'pending-timeout', 'pool-pending'] as const;
export type OverloadLimit = (typeof OVERLOAD_LIMITS)[number];

/** The `outcome` of tsmesh_mirrors_total: a copy sent, or not sent because the request's body outgrew what a copy holds. */
export const MIRROR_OUTCOMES = ['sent', 'dropped'] as const;
export type MirrorOutcome = (typeof MIRROR_OUTCOMES)[number];

/** The `kind` of tsmesh_faults_injected_total. */
export const FAULT_KINDS = ['abort', 'delay'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The `reason` of tsmesh_connections_refused_total: why a connection was
 * closed before any request. On mTLS connections between proxies (inbound:
 * the caller; outbound: the endpoint): tls-handshake, the handshake failed
 * (no chain to the mesh's roots, expired, not yet valid); invalid-svid, the
 * certificate is not an X.509-SVID (a CA, keyUsage, not exactly one URI SAN,
 * not a SPIFFE ID with a path); foreign-trust-domain, an X.509-SVID of
 * another trust domain; tls-peer, another identity than the config gives
 * (outbound), or no port or certificate to judge it by (inbound).
 */
export const REFUSAL_REASONS = [
  'overload',
  'no-original-destination',
  'loop',
  'tls-handshake',
  'invalid-svid',
  'foreign-trust-domain',
  'tls-peer',
  'no-certificate',
  'unauthorized',
  'first-bytes-timeout',
  'plaintext',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** The `direction` label. */
export const DIRECTIONS = ['inbound', 'outbound'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/**
 * The `reason` of tsmesh_trace_spans_dropped_total: spans the proxy let go of
 * rather than hold up requests or memory. queue-full: the export queue was at
 * its bound (the collector is slow or away); export-failed: the collector
 * refused a batch or could not be reached.
 */
export const SPAN_DROP_REASONS = ['queue-full', 'export-failed'] as const;
export type SpanDropReason = (typeof SPAN_DROP_REASONS)[number];

/** Which requests get an access log line (AccessLogSettings.mode). */
export const ACCESS_LOG_MODES = ['off', 'all', 'errors', 'sampled'] as const;
export type AccessLogMode = (typeof ACCESS_LOG_MODES)[number];

/** The phases of a live root rotation (ca/rotation.ts), the `phase` of tsmesh_ca_rotation_phase. */
export const ROTATION_PHASES = ['steady', 'trusting-new', 'issuing-new', 'ready-to-retire'] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];
