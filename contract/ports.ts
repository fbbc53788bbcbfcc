// The ports of tsmesh (contract/DESIGN.md). Manifests, probes, iptables rules
// and users' firewalls depend on them.
export const PORTS = {
  /** Sidecar: outbound capture (iptables REDIRECT of the app's outgoing TCP). */
  outbound: 15001,
  /** Sidecar: inbound capture (iptables REDIRECT of incoming TCP). */
  inbound: 15006,
  /** Sidecar admin: /live, /ready, /metrics, /config, /app-health/...; never redirected. */
  proxyAdmin: 15020,
  /** Control plane: the CA and the discovery stream (TLS; mTLS once the proxy holds a certificate). */
  controlPlane: 15012,
  /** Control plane: the admission webhook (HTTPS). */
  webhook: 9443,
  /** Control plane admin: /metrics, /healthz, /readyz, the dashboard. */
  controlPlaneAdmin: 15014,
} as const;
