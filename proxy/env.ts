// Every TSMESH_* variable the proxy reads, in one place. The webhook sets
// them from this table, so the two cannot drift apart.
import { PORT_LIST_HINT, parsePortList } from '../init/ports.js';

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
  TRUST_DOMAIN: 'cluster.local',
  CONTROL_PLANE_ADDRESS: 'tsmesh-control-plane.tsmesh-system.svc:15012',
  TOKEN_PATH: '/var/run/secrets/tsmesh/tokens/tsmesh-token',
  TRUST_BUNDLE_PATH: '/var/run/secrets/tsmesh/trust-bundle/root-cert.pem',
  INBOUND_PORT: 15006,
  OUTBOUND_PORT: 15001,
  ADMIN_PORT: 15020,
  LOG_LEVEL: 'info',
  DRAIN_DURATION: '20s',
} as const;

/** Where the webhook mounts the token and the trust bundle in the proxy container. */
export const PROXY_MOUNTS = {
  TOKEN_DIR: '/var/run/secrets/tsmesh/tokens',
  TOKEN_FILE: 'tsmesh-token',
  TRUST_BUNDLE_DIR: '/var/run/secrets/tsmesh/trust-bundle',
  TRUST_BUNDLE_KEY: 'root-cert.pem',
} as const;

/** The shape of TSMESH_APP_PROBES: what kubelet's probe would have done, per rewritten path. */
export interface AppProbe {
  httpGet?: { path?: string; port: number; scheme?: 'HTTP' | 'HTTPS'; host?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number; host?: string };
  timeoutSeconds?: number;
}
export type AppProbes = Record<string, AppProbe>;

export interface ProxySettings {
  podName: string | undefined;
  podNamespace: string | undefined;
  podIp: string | undefined;
  serviceAccount: string | undefined;
  trustDomain: string;
  controlPlaneAddress: string;
  tokenPath: string;
  trustBundlePath: string;
  configFile: string | undefined;
  inboundPort: number;
  outboundPort: number;
  adminPort: number;
  opaquePorts: number[];
  appProbesJson: string | undefined;
  logLevel: string;
  drainDuration: string;
}

export class ProxyEnvError extends Error {
  override name = 'ProxyEnvError';
}

function envPort(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ProxyEnvError(`${name}=${JSON.stringify(raw)} is not a port (1-65535)`);
  return n;
}

function opaquePorts(text: string): number[] {
  let ranges;
  try {
    ranges = parsePortList(text);
  } catch (e) {
    throw new ProxyEnvError(`${PROXY_ENV.OPAQUE_PORTS}: ${(e as Error).message}; ${PORT_LIST_HINT}`, { cause: e });
  }
  return ranges.flatMap((r) => Array.from({ length: r.last - r.first + 1 }, (_, i) => r.first + i));
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** Every setting of the proxy from its environment; a bad value names the variable. */
export function readProxySettings(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const opaque = nonEmpty(env[PROXY_ENV.OPAQUE_PORTS]);
  return {
    podName: nonEmpty(env[PROXY_ENV.POD_NAME]),
    podNamespace: nonEmpty(env[PROXY_ENV.POD_NAMESPACE]),
    podIp: nonEmpty(env[PROXY_ENV.POD_IP]),
    serviceAccount: nonEmpty(env[PROXY_ENV.SERVICE_ACCOUNT]),
    trustDomain: nonEmpty(env[PROXY_ENV.TRUST_DOMAIN]) ?? PROXY_DEFAULTS.TRUST_DOMAIN,
    controlPlaneAddress: nonEmpty(env[PROXY_ENV.CONTROL_PLANE_ADDRESS]) ?? PROXY_DEFAULTS.CONTROL_PLANE_ADDRESS,
    tokenPath: nonEmpty(env[PROXY_ENV.TOKEN_PATH]) ?? PROXY_DEFAULTS.TOKEN_PATH,
    trustBundlePath: nonEmpty(env[PROXY_ENV.TRUST_BUNDLE_PATH]) ?? PROXY_DEFAULTS.TRUST_BUNDLE_PATH,
    configFile: nonEmpty(env[PROXY_ENV.CONFIG_FILE]),
    inboundPort: envPort(env, PROXY_ENV.INBOUND_PORT, PROXY_DEFAULTS.INBOUND_PORT),
    outboundPort: envPort(env, PROXY_ENV.OUTBOUND_PORT, PROXY_DEFAULTS.OUTBOUND_PORT),
    adminPort: envPort(env, PROXY_ENV.ADMIN_PORT, PROXY_DEFAULTS.ADMIN_PORT),
    opaquePorts: opaque ? opaquePorts(opaque) : [],
    appProbesJson: nonEmpty(env[PROXY_ENV.APP_PROBES]),
    logLevel: nonEmpty(env[PROXY_ENV.LOG_LEVEL]) ?? PROXY_DEFAULTS.LOG_LEVEL,
    drainDuration: nonEmpty(env[PROXY_ENV.DRAIN_DURATION]) ?? PROXY_DEFAULTS.DRAIN_DURATION,
  };
}
