// The config compiled for the data path: a map from the address an app
// dialled (ClusterIP:port) to the service port behind it, built once per
// config so each connection costs one Map lookup.
import type { Endpoint, ProxyConfig, ServiceConfig, ServicePort } from '../../contract/proxy-config.js';

export interface ServiceTarget {
  service: ServiceConfig;
  port: ServicePort;
  /** "name.namespace", the destination_service label. */
  key: string;
  /** Ready endpoints with the port to dial on each. */
  endpoints: ResolvedEndpoint[];
}

export interface ResolvedEndpoint {
  endpoint: Endpoint;
  address: string;
  port: number;
  identity: string | undefined;
  weight: number;
}

export interface RoutingTable {
  config: ProxyConfig;
  /** Keyed by `${ip}:${port}` (IPv6 without brackets). */
  byAddress: ReadonlyMap<string, ServiceTarget>;
  /** Keyed by "name.namespace" then service port. */
  byName: ReadonlyMap<string, ReadonlyMap<number, ServiceTarget>>;
}

export const serviceKey = (s: Pick<ServiceConfig, 'name' | 'namespace'>): string => `${s.name}.${s.namespace}`;

function resolve(service: ServiceConfig, port: ServicePort): ResolvedEndpoint[] {
  return service.endpoints
    .filter((e) => e.ready !== false)
    .map((e) => ({
      endpoint: e,
      address: e.address,
      port: e.ports?.[port.name ?? ''] ?? e.ports?.[String(port.port)] ?? port.targetPort,
      identity: e.identity,
      weight: e.weight ?? 1,
    }));
}

export function buildRoutingTable(config: ProxyConfig): RoutingTable {
  const byAddress = new Map<string, ServiceTarget>();
  const byName = new Map<string, Map<number, ServiceTarget>>();
  for (const service of config.services) {
    const key = serviceKey(service);
    const ports = new Map<number, ServiceTarget>();
    byName.set(key, ports);
    for (const port of service.ports) {
      const target: ServiceTarget = { service, port, key, endpoints: resolve(service, port) };
      ports.set(port.port, target);
      for (const ip of service.clusterIPs) byAddress.set(`${ip}:${port.port}`, target);
    }
  }
  return { config, byAddress, byName };
}
