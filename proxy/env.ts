// The proxy's settings from its environment: the TSMESH_* variables of
// contract/env.ts, read and checked in one place.
import { PROXY_DEFAULTS, PROXY_ENV } from '../contract/env.js';
import { PORT_LIST_HINT, parsePortList } from '../init/ports.js';

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
  /** TSMESH_REQUEST_BODY_TIMEOUT (a Go duration); its default when absent. */
  requestBodyTimeout?: string;
  /** TSMESH_RESPONSE_HEAD_TIMEOUT (a Go duration, "0s" for none); its default when absent. */
  responseHeadTimeout?: string;
  /** TSMESH_H2_FRAMES is "true": HTTP/2 to meshed endpoints over tsmesh/h2f (http/h2-frames.ts). */
  h2Frames?: boolean;
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
    requestBodyTimeout: nonEmpty(env[PROXY_ENV.REQUEST_BODY_TIMEOUT]) ?? PROXY_DEFAULTS.REQUEST_BODY_TIMEOUT,
    responseHeadTimeout: nonEmpty(env[PROXY_ENV.RESPONSE_HEAD_TIMEOUT]) ?? PROXY_DEFAULTS.RESPONSE_HEAD_TIMEOUT,
    h2Frames: env[PROXY_ENV.H2_FRAMES] === 'true',
  };
}
