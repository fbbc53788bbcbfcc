// The names injection writes and reads: labels, annotations, containers,
// volumes. DESIGN.md fixes them; users, manifests and dashboards depend on them.

/** Namespace label, pod label or pod annotation: "enabled" or "disabled". */
export const INJECT_LABEL = 'tsmesh.io/inject';
export const INJECT_ENABLED = 'enabled';
export const INJECT_DISABLED = 'disabled';

/** What injection added (JSON); its presence makes injection a no-op. */
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

/** Equal to CONTROL_PLANE_NAMESPACE in control/plane.ts (a test keeps them equal); never injected. */
export const MESH_NAMESPACE = 'tsmesh-system';
export const SYSTEM_NAMESPACES: readonly string[] = [MESH_NAMESPACE, 'kube-system', 'kube-public', 'kube-node-lease'];

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

export const TRUST_BUNDLE_CONFIGMAP = 'tsmesh-trust-bundle';
/** The audience the CA accepts; kubelet mints the projected token for it. */
export { CA_TOKEN_AUDIENCE as TOKEN_AUDIENCE } from '../ca/authn/authenticator.js';

/** The proxy's uid and gid; init never redirects traffic of this uid. */
export const PROXY_UID = 1337;

/** Name of the proxy's admin port in the pod spec. */
export const ADMIN_PORT_NAME = 'tsmesh-admin';

export const PROMETHEUS_ANNOTATIONS = {
  scrape: 'prometheus.io/scrape',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
} as const;
