// Every Prometheus family tsmesh exposes: name, type, help and label names,
// in one catalogue. The proxy, the CA, the webhook and the control plane
// create their families from it; the control plane's observer, `tsmesh stat`
// and dashboards read the same names. Base units (seconds, bytes), `_total`
// counters, as Prometheus names them.

interface Family {
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly labels: readonly string[];
  readonly buckets?: readonly number[];
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const SIGNING_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05] as const;

export const METRICS = {
  // The sidecar proxy (proxy/metrics.ts, proxy/identity/metrics.ts).
  tsmesh_requests_total: {
    type: 'counter',
    help: 'HTTP requests handled by the proxy; a gRPC call is counted when it ends, with its grpc_status (empty for other requests); route is the TrafficPolicy route an outbound request took (default when none matched; empty inbound and for a request answered before routing).',
    labels: ['direction', 'source_identity', 'destination_identity', 'destination_service', 'route', 'response_code', 'tls', 'grpc_status'],
  },
  tsmesh_request_duration_seconds: {
    type: 'histogram',
    help: 'Time from the request arriving at the proxy to the response head leaving it, with the labels of tsmesh_requests_total but tls and grpc_status.',
    labels: ['direction', 'source_identity', 'destination_identity', 'destination_service', 'route', 'response_code'],
    buckets: LATENCY_BUCKETS,
  },
  tsmesh_retries_total: { type: 'counter', help: 'Requests retried, by why.', labels: ['destination_service', 'reason'] },
  tsmesh_retry_budget_exhausted_total: { type: 'counter', help: 'Retries not made because the retry budget was spent.', labels: ['destination_service'] },
  tsmesh_endpoint_ejections_total: { type: 'counter', help: 'Endpoints ejected by the circuit breaker.', labels: ['destination_service'] },
  tsmesh_endpoints_ejected: {
    type: 'gauge',
    help: 'Endpoints the circuit breaker holds out of service now (ejected or being probed).',
    labels: ['destination_service'],
  },
  tsmesh_faults_injected_total: { type: 'counter', help: 'Faults injected by policy, by kind (abort, delay).', labels: ['destination_service', 'kind'] },
  tsmesh_mirrors_total: {
    type: 'counter',
    help: "Copies of requests for a route's mirror Service: sent, or dropped because the request's body outgrew what a copy holds.",
    labels: ['destination_service', 'mirror_service', 'outcome'],
  },
  tsmesh_authz_denials_total: {
    type: 'counter',
    help: 'Inbound requests (http) and connections (tcp) denied by authorization: policy is the DENY policy (rule its index), the ALLOW policies none of whose rules matched, or default:<default inbound policy>.',
    labels: ['source_identity', 'port', 'protocol', 'policy', 'rule'],
  },
  tsmesh_authz_audits_total: {
    type: 'counter',
    help: 'Inbound requests (http) and connections (tcp) a rule of an AUDIT authorization policy matched: what it would deny; they went on.',
    labels: ['source_identity', 'port', 'protocol', 'policy', 'rule'],
  },
  tsmesh_tcp_connections_opened_total: { type: 'counter', help: 'TCP connections opened: opaque TCP, and HTTP/1.1 connections once upgraded (WebSocket).', labels: ['direction', 'destination_service', 'tls'] },
  tsmesh_tcp_connections_closed_total: { type: 'counter', help: 'TCP connections closed: opaque TCP, and HTTP/1.1 connections once upgraded (WebSocket).', labels: ['direction', 'destination_service', 'tls'] },
  tsmesh_tcp_sent_bytes_total: { type: 'counter', help: 'Bytes sent to the peer of the connection.', labels: ['direction', 'destination_service'] },
  tsmesh_tcp_received_bytes_total: { type: 'counter', help: 'Bytes received from the peer of the connection.', labels: ['direction', 'destination_service'] },
  tsmesh_egress_connections_total: {
    type: 'counter',
    help: 'Outbound connections (and plain HTTP requests) to destinations outside the mesh, by destination (the egress entry that matched, else the SNI or Host seen, else the address; at most 100 distinct names per proxy, then other) and decision (allowed, denied).',
    labels: ['destination', 'decision'],
  },
  tsmesh_config_updates_total: { type: 'counter', help: 'Configs taken into use.', labels: [] },
  tsmesh_connections_refused_total: { type: 'counter', help: 'Connections closed before any request, by reason.', labels: ['direction', 'reason'] },
  tsmesh_tls_handshakes_total: {
    type: 'counter',
    help: 'Mesh mTLS handshakes between sidecars that passed the identity checks, by direction and resumed: true for a TLS session resumed (no certificate signed or verified), false for a full handshake.',
    labels: ['direction', 'resumed'],
  },
  tsmesh_mux_buffered_bytes: { type: 'gauge', help: 'Bytes tsmesh/mux holds for paused readers in the whole proxy.', labels: [] },
  tsmesh_mux_streams_refused_total: { type: 'counter', help: 'tsmesh/mux streams refused because the memory they may hold was spent.', labels: [] },
  tsmesh_http_errors_total: {
    type: 'counter',
    help: 'HTTP requests the proxy ended itself, by error: its x-tsmesh-error, or cancelled when the caller went away first.',
    labels: ['direction', 'destination_service', 'error'],
  },
  tsmesh_overload_rejections_total: {
    type: 'counter',
    help: 'Requests answered 503 overloaded, by the limit that turned them away.',
    labels: ['direction', 'destination_service', 'limit'],
  },
  tsmesh_identity_cert_expiration_timestamp_seconds: {
    type: 'gauge',
    help: "When the proxy's workload certificate expires (Unix seconds); 0 until the first certificate.",
    labels: [],
  },
  tsmesh_identity_cert_renewals_total: {
    type: 'counter',
    help: 'Certificate requests to the CA, the first included, by result (success or failure).',
    labels: ['result'],
  },
  tsmesh_trace_spans_exported_total: { type: 'counter', help: 'Spans the collector accepted.', labels: [] },
  tsmesh_trace_spans_dropped_total: {
    type: 'counter',
    help: 'Spans dropped instead of exported, by reason: queue-full (the export queue was at its bound) or export-failed (the collector refused them or could not be reached).',
    labels: ['reason'],
  },
  tsmesh_tap_events_total: { type: 'counter', help: 'Tap events (proxy/tap/hub.ts) sent to the control plane.', labels: [] },
  tsmesh_tap_events_dropped_total: {
    type: 'counter',
    help: 'Tap events dropped instead of sent, by reason: rate-limit (past the tap\'s maxRps) or buffer-full (its connection held too much unsent).',
    labels: ['reason'],
  },

  // The CA (ca/metrics.ts).
  tsmesh_ca_certificates_issued_total: { type: 'counter', help: 'Workload certificates issued.', labels: [] },
  tsmesh_ca_certificate_errors_total: { type: 'counter', help: 'Certificate requests refused or failed, by reason (the CA error code).', labels: ['reason'] },
  tsmesh_ca_signing_duration_seconds: { type: 'histogram', help: 'Time to verify a CSR and sign its certificate.', labels: [], buckets: SIGNING_BUCKETS },
  tsmesh_ca_issuer_expiration_timestamp_seconds: { type: 'gauge', help: 'When the certificate that signs workload certificates expires (Unix seconds).', labels: [] },
  tsmesh_ca_root_expiration_timestamp_seconds: {
    type: 'gauge',
    help: 'When each root of the trust bundle in force expires (Unix seconds), by its SHA-256 fingerprint and role: signing (the root the certificates issued now chain to), next (the root a rotation moves to), trusted (any other).',
    labels: ['fingerprint', 'role'],
  },
  tsmesh_ca_rotation_phase: { type: 'gauge', help: '1 for the root rotation phase this replica is in (steady, trusting-new, issuing-new, ready-to-retire), 0 for the others.', labels: ['phase'] },
  tsmesh_ca_material_reloads_total: {
    type: 'counter',
    help: 'Changes of the CA folder (Secret tsmesh-ca) taken or refused, by result: applied, or refused (the material did not hold together; the last good one stays in force).',
    labels: ['result'],
  },
  tsmesh_ca_certificate_ttl_seconds: {
    type: 'gauge',
    help: 'Lifetime of the certificates the CA issues now (ConfigMap tsmesh-config certificateTtl, else --cert-ttl).',
    labels: [],
  },

  // The injector (webhook/metrics.ts).
  tsmesh_webhook_admissions_total: { type: 'counter', help: 'Admission reviews answered, by result (injected, skipped, refused, error).', labels: ['result'] },
  tsmesh_webhook_skipped_total: { type: 'counter', help: 'Pods admitted without injection, by reason (host-network, already-injected, opted-out, ...).', labels: ['reason'] },
  tsmesh_webhook_refused_total: { type: 'counter', help: 'Pods refused, by reason (bad-override, port-conflict, invalid-pod, proxy-uid).', labels: ['reason'] },
  tsmesh_webhook_errors_total: { type: 'counter', help: 'Reviews that failed, by reason (bad-review, too-large, internal).', labels: ['reason'] },
  tsmesh_webhook_admission_duration_seconds: {
    type: 'histogram',
    help: 'Time from a parsed review to its answer (the patch built), excluding the network.',
    labels: [],
    buckets: SIGNING_BUCKETS,
  },

  // Discovery (control/stream.ts, control/sources/kubernetes-informer.ts).
  tsmesh_control_connected_proxies: { type: 'gauge', help: 'Proxies subscribed to the discovery stream.', labels: [] },
  tsmesh_control_pushes_total: { type: 'counter', help: 'Configs written to proxies.', labels: [] },
  tsmesh_control_push_latency_seconds: {
    type: 'histogram',
    help: 'From a change of the mesh to the proxy acknowledging the config that carries it.',
    labels: [],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  },
  tsmesh_control_config_bytes: { type: 'gauge', help: 'Size of the largest config last pushed.', labels: [] },
  tsmesh_control_watch_errors_total: { type: 'counter', help: "Errors of the control plane's list and watch requests to the Kubernetes API, by resource; each is followed by a retry with backoff.", labels: ['resource'] },
} as const satisfies Record<`tsmesh_${string}`, Family>;

export type MetricName = keyof typeof METRICS;
export type LabelOf<N extends MetricName> = (typeof METRICS)[N]['labels'][number];

type FamilyOptions<N extends MetricName> = { name: N; help: string; labelNames: LabelOf<N>[] } & ((typeof METRICS)[N] extends { buckets: readonly number[] } ? { buckets: number[] } : unknown);

/** name, help, labelNames (and buckets) of a family, as prom-client's constructors take them. */
export function family<N extends MetricName>(name: N): FamilyOptions<N> {
  const f: Family = METRICS[name];
  return { name, help: f.help, labelNames: [...f.labels], ...(f.buckets ? { buckets: [...f.buckets] } : {}) } as FamilyOptions<N>;
}
