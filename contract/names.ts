// The names of tsmesh in a cluster: labels, annotations, namespaces,
// containers, volumes, ConfigMaps, the CRDs' group and kinds. contract/DESIGN.md
// fixes them; users, manifests and dashboards depend on them.

/** Namespace label, pod label or pod annotation: "enabled" or "disabled". */
export const INJECT_LABEL = 'tsmesh.io/inject';
export const INJECT_ENABLED = 'enabled';
export const INJECT_DISABLED = 'disabled';

/** What injection added (JSON); its presence makes injection a no-op, and marks the pod's endpoints as meshed (reached over mTLS). */
export const STATUS_ANNOTATION = 'tsmesh.io/status';

/** Per-pod overrides, read from annotations. */
export const OVERRIDE_ANNOTATIONS = {
  skipInboundPorts: 'tsmesh.io/skip-inbound-ports',
  skipOutboundPorts: 'tsmesh.io/skip-outbound-ports',
  skipOutboundCidrs: 'tsmesh.io/skip-outbound-cidrs',
  opaquePorts: 'tsmesh.io/opaque-ports',
  proxyCpuRequest: 'tsmesh.io/proxy-cpu-request',
  proxyMemoryRequest: 'tsmesh.io/proxy-memory-request',
  proxyMemoryLimit: 'tsmesh.io/proxy-memory-limit',
  proxyLogLevel: 'tsmesh.io/proxy-log-level',
} as const;

/**
 * Inbound policy of a namespace (on the Namespace) or of a workload (on its
 * pods; pods of one ServiceAccount share one proxy config), read by the
 * control plane and carried to the proxies; the most specific wins over the
 * namespace's, which wins over tsmesh-config's:
 *   defaultInboundPolicy  all-authenticated | all-unauthenticated | deny (DEFAULT_INBOUND_POLICIES)
 *   mtlsMode              STRICT | PERMISSIVE
 *   portMtlsModes         per port, pods only: "8080=PERMISSIVE,9090=STRICT"
 */
export const INBOUND_POLICY_ANNOTATIONS = {
  defaultInboundPolicy: 'tsmesh.io/default-inbound-policy',
  mtlsMode: 'tsmesh.io/mtls-mode',
  portMtlsModes: 'tsmesh.io/port-mtls-modes',
} as const;

/**
 * Telemetry of a namespace (on the Namespace) or of a workload (on its pods),
 * over tsmesh-config's, read and layered as the inbound settings are
 * (contract/annotations.ts):
 *   tracing     on | off, or comma-separated export=on|off, sampling=0-1, collector=URL
 *   access-log  off | all | errors | sampled, and comma-separated sampling=0-1, query=on|off
 */
export const TELEMETRY_ANNOTATIONS = {
  tracing: 'tsmesh.io/tracing',
  accessLog: 'tsmesh.io/access-log',
} as const;

/**
 * Egress of a namespace (on the Namespace) or of a workload (on its pods),
 * over tsmesh-config's `egress`: the mode (the most specific wins) and
 * allow-list entries (added to the mesh's and the namespace's).
 */
export const EGRESS_ANNOTATIONS = {
  mode: 'tsmesh.io/egress-mode',
  allow: 'tsmesh.io/egress-allow',
} as const;

/** The control plane's namespace; never injected. */
export const MESH_NAMESPACE = 'tsmesh-system';
export const SYSTEM_NAMESPACES: readonly string[] = [MESH_NAMESPACE, 'kube-system', 'kube-public', 'kube-node-lease'];

/** The control plane's Deployment, Service, ServiceAccount, leader Lease and field manager all carry this name. */
export const CONTROL_PLANE_NAME = 'tsmesh-control-plane';

export const INIT_CONTAINER = 'tsmesh-init';
export const PROXY_CONTAINER = 'tsmesh-proxy';

export const VOLUMES = {
  /** Projected ServiceAccount token, audience tsmesh-ca. */
  token: 'tsmesh-token',
  /** ConfigMap tsmesh-trust-bundle, kept in every meshed namespace by the control plane. */
  trustBundle: 'tsmesh-trust-bundle',
  /** An emptyDir on the init container's /run: iptables takes its lock file there while the root filesystem is read-only. */
  xtablesLock: 'tsmesh-xtables-lock',
} as const;

/** The mesh's roots, in every meshed namespace, under the key TRUST_BUNDLE_KEY. */
export const TRUST_BUNDLE_CONFIGMAP = 'tsmesh-trust-bundle';
export const TRUST_BUNDLE_KEY = 'root-cert.pem';
/** The labels of the objects the control plane keeps (the trust-bundle ConfigMaps). */
export const MANAGED_BY_LABELS = { 'app.kubernetes.io/managed-by': 'tsmesh', 'app.kubernetes.io/part-of': 'tsmesh' } as const;
/** The injector's MutatingWebhookConfiguration; the control plane keeps its caBundle. */
export const WEBHOOK_CONFIGURATION_NAME = 'tsmesh-sidecar-injector';
/** Mesh-wide settings: ConfigMap tsmesh-config in MESH_NAMESPACE, with these keys (manifests/tsmesh-config.yaml). */
export const MESH_CONFIG_NAME = 'tsmesh-config';
export const MESH_CONFIG_KEYS = ['mtlsMode', 'defaultInboundPolicy', 'retryBudget', 'tracing', 'accessLog', 'egress', 'certificateTtl', 'trustDomain'] as const;
/** The CA's key and roots: Secret tsmesh-ca in MESH_NAMESPACE. */
export const CA_SECRET_NAME = 'tsmesh-ca';

/** The audience the CA accepts; kubelet mints the projected token for it. */
export const CA_TOKEN_AUDIENCE = 'tsmesh-ca';

/** The proxy's uid and gid; init never redirects traffic of this uid or gid. */
export const PROXY_UID = 1337;

/**
 * Pod annotation: "true" admits a pod with a container running as the
 * proxy's uid or gid (its traffic is never redirected, so it bypasses the
 * proxy and mTLS), with a warning; without it such a pod is refused.
 */
export const ALLOW_PROXY_UID_ANNOTATION = 'tsmesh.io/allow-proxy-uid';

/** Name of the proxy's admin port in the pod spec. */
export const ADMIN_PORT_NAME = 'tsmesh-admin';

export const PROMETHEUS_ANNOTATIONS = {
  scrape: 'prometheus.io/scrape',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
} as const;

/** The label the EndpointSlice controller puts on each slice: the Service it belongs to. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** The tsmesh CRDs. */
export const POLICY_GROUP = 'tsmesh.io';
export const POLICY_VERSION = 'v1alpha1';
export const TRAFFIC_POLICY_PLURAL = 'trafficpolicies';
export const AUTHORIZATION_POLICY_PLURAL = 'authorizationpolicies';

/**
 * The Gateway API (mesh profile): the kinds the control plane reads, the
 * release whose standard-channel CRDs `tsmesh install` brings
 * (manifests/gateway-api-crds.yaml), and the controllerName of the route
 * status the leader writes.
 */
export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_API_VERSION = 'v1';
export const GATEWAY_API_PLURALS = { httpRoute: 'httproutes', grpcRoute: 'grpcroutes', referenceGrant: 'referencegrants' } as const;
export const GATEWAY_API_BUNDLE_VERSION = 'v1.6.3';
export const GATEWAY_API_BUNDLE_VERSION_ANNOTATION = 'gateway.networking.k8s.io/bundle-version';
export const GATEWAY_API_CHANNEL_ANNOTATION = 'gateway.networking.k8s.io/channel';
export const MESH_CONTROLLER_NAME = 'tsmesh.io/mesh-controller';

/**
 * Tap (`tsmesh tap`, contract/DESIGN.md): the control plane lets a caller tap
 * a namespace's workloads when a SubjectAccessReview allows verb TAP_VERB on
 * resource TAP_RESOURCE of API group TAP_API_GROUP there, and see header
 * values when it allows the same verb on subresource TAP_HEADERS_SUBRESOURCE.
 * No API serves the group: it exists for RBAC only. ClusterRole
 * TAP_CLUSTER_ROLE grants both.
 */
export const TAP_API_GROUP = 'tap.tsmesh.io';
export const TAP_RESOURCE = 'tap';
export const TAP_HEADERS_SUBRESOURCE = 'headers';
export const TAP_VERB = 'watch';
export const TAP_CLUSTER_ROLE = 'tsmesh-tap';
