// The per-pod overrides, read from the pod's annotations and checked. A bad
// value refuses the pod: a mesh that silently ignored `skip-inbound-ports: abc`
// would capture a port the user meant to keep out of it.
import { CIDR_LIST_HINT, cidrText, parseCidrList, type Cidr } from '../init/cidr.js';
import { PORT_LIST_HINT, parsePortList, uniquePorts, type PortRange } from '../init/ports.js';
import { LOG_LEVELS, type LogLevel } from '../lib/log.js';
import { InjectionRefused } from './errors.js';
import type { MeshConfig, ProxyResources } from './mesh-config.js';
import { OVERRIDE_ANNOTATIONS } from '../contract/names.js';
import { scopedSettings } from '../contract/annotations.js';
import { parseQuantity, QUANTITY_HINT } from './quantity.js';

export interface Overrides {
  readonly skipInboundPorts: readonly PortRange[];
  readonly skipOutboundPorts: readonly PortRange[];
  readonly skipOutboundCidrs: readonly Cidr[];
  readonly opaquePorts: readonly PortRange[];
  readonly resources: ProxyResources;
  readonly logLevel: LogLevel;
}

export type Annotations = Readonly<Record<string, string>>;

function refuse(annotation: string, value: string, problem: string, expected: string): never {
  throw new InjectionRefused(
    'bad-override',
    `annotation ${annotation}: ${JSON.stringify(value)} ${problem}; ${expected}. Fix the annotation or remove it`,
  );
}

function ports(annotations: Annotations, annotation: string): PortRange[] {
  const value = annotations[annotation];
  if (value === undefined) return [];
  try {
    return uniquePorts(parsePortList(value));
  } catch (e) {
    return refuse(annotation, value, `is not a port list (${(e as Error).message})`, PORT_LIST_HINT);
  }
}

function cidrs(annotations: Annotations, annotation: string): Cidr[] {
  const value = annotations[annotation];
  if (value === undefined) return [];
  try {
    return parseCidrList(value);
  } catch (e) {
    return refuse(annotation, value, `is not an address list (${(e as Error).message})`, CIDR_LIST_HINT);
  }
}

function quantity(annotations: Annotations, annotation: string, fallback: string): string {
  const value = annotations[annotation];
  if (value === undefined) return fallback;
  if (parseQuantity(value) === undefined) refuse(annotation, value, 'is not a resource quantity', QUANTITY_HINT);
  return value.trim();
}

/** Reads and checks every override annotation; throws InjectionRefused('bad-override') naming the first bad one. */
export function readOverrides(annotations: Annotations, mesh: MeshConfig): Overrides {
  const a = OVERRIDE_ANNOTATIONS;
  const skipInboundPorts = ports(annotations, a.skipInboundPorts);
  const skipOutboundPorts = ports(annotations, a.skipOutboundPorts);
  const skipOutboundCidrs = cidrs(annotations, a.skipOutboundCidrs);
  const opaquePorts = ports(annotations, a.opaquePorts);
  const defaults = mesh.proxyResources;
  const resources: ProxyResources = {
    ...defaults,
    cpuRequest: quantity(annotations, a.proxyCpuRequest, defaults.cpuRequest),
    memoryRequest: quantity(annotations, a.proxyMemoryRequest, defaults.memoryRequest),
    memoryLimit: quantity(annotations, a.proxyMemoryLimit, defaults.memoryLimit),
  };
  if (parseQuantity(resources.memoryRequest)! > parseQuantity(resources.memoryLimit)!) {
    const which = annotations[a.proxyMemoryRequest] !== undefined ? a.proxyMemoryRequest : a.proxyMemoryLimit;
    refuse(
      which,
      annotations[which]!,
      `makes the proxy's memory request (${resources.memoryRequest}) larger than its limit (${resources.memoryLimit})`,
      `set ${a.proxyMemoryRequest} at or below ${a.proxyMemoryLimit}`,
    );
  }
  const level = annotations[a.proxyLogLevel];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) {
    refuse(a.proxyLogLevel, level, 'is not a log level', `expected one of ${LOG_LEVELS.join(', ')}`);
  }
  // The inbound settings the control plane reads from the pod (tsmesh.io/mtls-mode and the like): a pod it could not read them from is not created.
  try {
    scopedSettings(annotations, '');
  } catch (e) {
    throw new InjectionRefused('bad-override', `annotation ${(e as Error).message}. Fix the annotation or remove it`);
  }
  return { skipInboundPorts, skipOutboundPorts, skipOutboundCidrs, opaquePorts, resources, logLevel: (level as LogLevel | undefined) ?? mesh.logLevel };
}

/** "25,8000-8100": the form operators write and `tsmesh init` reads. */
export function portListText(ranges: readonly PortRange[]): string {
  return ranges.map((r) => (r.first === r.last ? String(r.first) : `${r.first}-${r.last}`)).join(',');
}

export function cidrListText(list: readonly Cidr[]): string {
  return list.map(cidrText).join(',');
}
