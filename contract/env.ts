// Every TSMESH_* variable the proxy reads, with its default and where the
// webhook mounts what the proxy needs. The webhook sets them from this table
// and the proxy reads them from it (proxy/env.ts), so the two cannot drift.
// Then the control plane's variables (CONTROL_PLANE_ENV).
import { CONTROL_PLANE_NAME, MESH_NAMESPACE, TRUST_BUNDLE_KEY } from './names.js';
import { PORTS } from './ports.js';
import { DEFAULT_TRUST_DOMAIN } from './spiffe.js';

export const PROXY_ENV = {
  POD_NAME: 'TSMESH_POD_NAME',
  POD_NAMESPACE: 'TSMESH_POD_NAMESPACE',
  POD_IP: 'TSMESH_POD_IP',
  SERVICE_ACCOUNT: 'TSMESH_SERVICE_ACCOUNT',
  TRUST_DOMAIN: 'TSMESH_TRUST_DOMAIN',
  /** host:port of the control plane's TLS port (CA and discovery). */
  CONTROL_PLANE_ADDRESS: 'TSMESH_CONTROL_PLANE_ADDRESS',
  /** The projected ServiceAccount token, audience tsmesh-ca. */
  TOKEN_PATH: 'TSMESH_TOKEN_PATH',
  /** PEM roots, from the ConfigMap tsmesh-trust-bundle. */
  TRUST_BUNDLE_PATH: 'TSMESH_TRUST_BUNDLE_PATH',
  /** Run on a config file instead of the control plane's stream. */
  CONFIG_FILE: 'TSMESH_CONFIG_FILE',
  INBOUND_PORT: 'TSMESH_INBOUND_PORT',
  OUTBOUND_PORT: 'TSMESH_OUTBOUND_PORT',
  ADMIN_PORT: 'TSMESH_ADMIN_PORT',
  /** Comma-separated ports the proxy treats as opaque TCP (no protocol detection). */
  OPAQUE_PORTS: 'TSMESH_OPAQUE_PORTS',
  /** JSON: the app containers' original probes, keyed by /app-health/<container>/<livez|readyz|startupz>. */
  APP_PROBES: 'TSMESH_APP_PROBES',
  LOG_LEVEL: 'TSMESH_LOG_LEVEL',
  /** How long SIGTERM waits for in-flight requests and connections. */
  DRAIN_DURATION: 'TSMESH_DRAIN_DURATION',
  /**
   * An HTTP/1.1 request body must bring at least 1 KiB within each period
   * of this length (a Go duration), or it gets 408 and its connection
   * closes: a client that stalls or trickles holds no connection for ever.
   */
  REQUEST_BODY_TIMEOUT: 'TSMESH_REQUEST_BODY_TIMEOUT',
  /**
   * How long an outbound request, once sent whole, waits for its response's
   * head (a Go duration; "0s": no bound) before the caller gets 504
   * `response-head-timeout`; a route timeout or a gRPC deadline replaces it.
   */
  RESPONSE_HEAD_TIMEOUT: 'TSMESH_RESPONSE_HEAD_TIMEOUT',
  /**
   * "true": HTTP/2 (gRPC) requests to meshed endpoints go as frames of the
   * proxy's own over ALPN tsmesh/h2f instead of a node:http2 session
   * (a prototype; the endpoint's sidecar must be one that serves tsmesh/h2f).
   * Anything else, or unset: tsmesh/h2.
   */
  H2_FRAMES: 'TSMESH_H2_FRAMES',
} as const;

/**
 * NODE_OPTIONS of every proxy process (the injected container, the demo's
 * sidecars, the benchmark's). V8 lets the young generation grow to 16 MB per
 * semi-space; the proxy's garbage is short-lived and small (a request's head,
 * its buffers), so 1 MB semi-spaces hold it: RSS at 1,000 req/s went from
 * 83 MB to 67 MB, with the same CPU per request (npm run bench:sidecar).
 */
export const PROXY_NODE_OPTIONS = '--max-semi-space-size=1';

export const PROXY_DEFAULTS = {
  TRUST_DOMAIN: DEFAULT_TRUST_DOMAIN,
  CONTROL_PLANE_ADDRESS: `${CONTROL_PLANE_NAME}.${MESH_NAMESPACE}.svc:${PORTS.controlPlane}`,
  TOKEN_PATH: '/var/run/secrets/tsmesh/tokens/tsmesh-token',
  TRUST_BUNDLE_PATH: '/var/run/secrets/tsmesh/trust-bundle/root-cert.pem',
  INBOUND_PORT: PORTS.inbound,
  OUTBOUND_PORT: PORTS.outbound,
  ADMIN_PORT: PORTS.proxyAdmin,
  LOG_LEVEL: 'info',
  DRAIN_DURATION: '20s',
  // nginx's client_body_timeout, for a body that pauses; the 1 KiB floor is what closes a trickle.
  REQUEST_BODY_TIMEOUT: '60s',
  // nginx's proxy_read_timeout, which long-polls are written to stay under; why, in contract/DESIGN.md.
  RESPONSE_HEAD_TIMEOUT: '60s',
} as const;

/**
 * The TSMESH_* variables `tsmesh control-plane` reads, each in place of the
 * flag of the same name (a flag wins over its variable).
 */
export const CONTROL_PLANE_ENV = {
  /** --ca-dir: the CA material. */
  CA_DIR: 'TSMESH_CA_DIR',
  /** --trust-domain. */
  TRUST_DOMAIN: 'TSMESH_TRUST_DOMAIN',
  /** --cert-ttl: the certificate lifetime while ConfigMap tsmesh-config sets none. */
  CERT_TTL: 'TSMESH_CERT_TTL',
  /** --token-file: local mode, proxies authenticated by static tokens. */
  TOKEN_FILE: 'TSMESH_TOKEN_FILE',
  /** --mesh-file: discovery from a local Mesh file. */
  MESH_FILE: 'TSMESH_MESH_FILE',
  /** --log-level. */
  LOG_LEVEL: 'TSMESH_LOG_LEVEL',
} as const;

/** Where the webhook mounts the token and the trust bundle in the proxy container. */
export const PROXY_MOUNTS = {
  TOKEN_DIR: '/var/run/secrets/tsmesh/tokens',
  TOKEN_FILE: 'tsmesh-token',
  TRUST_BUNDLE_DIR: '/var/run/secrets/tsmesh/trust-bundle',
  TRUST_BUNDLE_KEY,
} as const;

/** The shape of TSMESH_APP_PROBES: what kubelet's probe would have done, per rewritten path. */
export interface AppProbe {
  httpGet?: { path?: string; port: number; scheme?: 'HTTP' | 'HTTPS'; host?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number; host?: string };
  /** grpc.health.v1.Health/Check of `service` ("" or absent: the server as a whole). */
  grpc?: { port: number; service?: string };
  timeoutSeconds?: number;
}
export type AppProbes = Record<string, AppProbe>;
