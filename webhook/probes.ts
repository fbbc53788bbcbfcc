// Kubelet probes the pod IP, so under STRICT mTLS an httpGet, tcpSocket or
// grpc probe of an app container would be refused by the proxy's inbound
// side. The probe is pointed at the proxy's admin port instead
// (/app-health/<container>/<livez|readyz|startupz> on 15020, never redirected),
// and the original is handed to the proxy in TSMESH_APP_PROBES, which runs it
// against the app over loopback (a grpc probe as grpc.health.v1.Health/Check
// over h2c, as kubelet calls it).
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { PROXY_DEFAULTS, type AppProbe, type AppProbes } from '../contract/env.js';

export const PROBE_KINDS = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const;
export type ProbeField = (typeof PROBE_KINDS)[number][0];

export function appHealthPath(container: string, kind: (typeof PROBE_KINDS)[number][1]): string {
  return `/app-health/${container}/${kind}`;
}

export interface RewrittenProbe {
  readonly containerIndex: number;
  readonly field: ProbeField;
  readonly probe: V1Probe;
}

export interface ProbeRewrite {
  readonly rewritten: readonly RewrittenProbe[];
  /** Keyed by the /app-health path kubelet now calls. */
  readonly appProbes: AppProbes;
  readonly warnings: readonly string[];
}

/** A probe port (number or the name of one of the container's ports) as a number; undefined when it names no port. */
export function resolvePort(port: unknown, container: V1Container): number | undefined {
  if (typeof port === 'number') return Number.isInteger(port) && port >= 1 && port <= 65535 ? port : undefined;
  if (typeof port !== 'string') return undefined;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

// The probe's timing and thresholds stay as the user wrote them; only the action changes.
function withoutAction(probe: V1Probe): V1Probe {
  const { httpGet: _h, tcpSocket: _t, grpc: _g, ...rest } = probe;
  return rest;
}

function original(probe: V1Probe, container: V1Container): AppProbe | string {
  const timeout = probe.timeoutSeconds === undefined ? {} : { timeoutSeconds: probe.timeoutSeconds };
  if (probe.httpGet) {
    const { path, port, scheme, host, httpHeaders } = probe.httpGet;
    const resolved = resolvePort(port, container);
    if (resolved === undefined) return `port ${JSON.stringify(port)} is not one of the container's ports`;
    if (scheme !== undefined && scheme !== 'HTTP' && scheme !== 'HTTPS') return `scheme ${JSON.stringify(scheme)} is not HTTP or HTTPS`;
    return {
      httpGet: {
        ...(path === undefined ? {} : { path }),
        port: resolved,
        ...(scheme === undefined ? {} : { scheme }),
        ...(host === undefined ? {} : { host }),
        ...(httpHeaders === undefined ? {} : { httpHeaders: httpHeaders.map(({ name, value }) => ({ name, value })) }),
      },
      ...timeout,
    };
  }
  if (probe.grpc) {
    const { port, service } = probe.grpc;
    // Kubelet's grpc probe takes a port number only (no named ports).
    if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${JSON.stringify(port)} is not a port number`;
    return { grpc: { port, ...(service ? { service } : {}) }, ...timeout };
  }
  const { port, host } = probe.tcpSocket!;
  const resolved = resolvePort(port, container);
  if (resolved === undefined) return `port ${JSON.stringify(port)} is not one of the container's ports`;
  return { tcpSocket: { port: resolved, ...(host === undefined ? {} : { host }) }, ...timeout };
}

/** Rewrites the httpGet, tcpSocket and grpc probes of the app containers; exec probes need nothing. */
export function rewriteProbes(containers: readonly V1Container[], adminPort: number = PROXY_DEFAULTS.ADMIN_PORT): ProbeRewrite {
  const rewritten: RewrittenProbe[] = [];
  const appProbes: AppProbes = {};
  const warnings: string[] = [];
  containers.forEach((container, containerIndex) => {
    for (const [field, kind] of PROBE_KINDS) {
      const probe = container[field];
      if (!probe) continue;
      if (!probe.httpGet && !probe.tcpSocket && !probe.grpc) continue;
      const app = original(probe, container);
      if (typeof app === 'string') {
        warnings.push(`${field} of container ${container.name} is left as it is: ${app}`);
        continue;
      }
      const path = appHealthPath(container.name, kind);
      appProbes[path] = app;
      rewritten.push({ containerIndex, field, probe: { httpGet: { path, port: adminPort, scheme: 'HTTP' }, ...withoutAction(probe) } });
    }
  });
  return { rewritten, appProbes, warnings };
}
