// The config compiled for the data path: maps from the address an app
// dialled to what is behind it, built once per config so each connection
// costs one or two Map lookups.
//
// An app reaches a service in two ways. Through a ClusterIP:port, and the
// proxy balances over the service's ready endpoints. Or through a pod's own
// address: a headless Service's DNS answers, a StatefulSet pod's name
// (<pod>.<service>.<namespace>.svc), a peer list of pod IPs. Then the caller
// chose one pod, so every request goes to that pod alone, over mTLS with its
// identity, with the L7 handling of its Service's port. Nothing new travels
// for it: the endpoints of every service are in the config already, and the
// proxy indexes them here (an index sent by the control plane would repeat
// every endpoint once per port to every proxy).
//
// Which Service a pod's address:port belongs to when several list it: the
// first, in this order, that has an endpoint at that address whose port on it
// is the dialled one: headless Services (no cluster IPs) first, since theirs
// is the DNS that gives pod addresses out; then by namespace, then by name;
// within a Service, its ports in the order it lists them. A meshed pod's
// other ports (no Service names them) are carried as opaque TCP over mTLS to
// that pod with its identity (`meshedPods`; not for loopback addresses, which
// are no pod's: the proxy's own tests and local mode give endpoints loopback
// addresses with a port each). Endpoints without an identity (no sidecar) are
// not indexed: a call to their address passes through.
//
// A meshed endpoint's port that its sidecar does not capture (the admin port,
// and the pod's skip-inbound-ports, `skipInboundPorts` in the config) is
// reached in plain TCP, as its pod's init let it be, whether through a
// ClusterIP (the endpoint resolves without an identity) or by its address
// (not indexed: passed through).
import type { Endpoint, ProxyConfig, ServiceConfig, ServicePort } from '../../contract/proxy-config.js';
import { PORTS } from '../../contract/ports.js';

export interface ServiceTarget {
  service: ServiceConfig;
  port: ServicePort;
  /** "name.namespace", the destination_service label. */
  key: string;
  /** Ready endpoints with the port to dial on each; for a pinned target, the one endpoint. */
  endpoints: ResolvedEndpoint[];
  /**
   * Set when the app dialled this endpoint's own address: requests go to it
   * alone (retries included), whatever its readiness, and routes do not send
   * them to other services.
   */
  pinned?: ResolvedEndpoint;
}

export interface ResolvedEndpoint {
  endpoint: Endpoint;
  address: string;
  port: number;
  identity: string | undefined;
  weight: number;
}

/** A meshed pod by its address: where a port no Service names is carried as opaque TCP over mTLS. */
export interface MeshedPod {
  address: string;
  identity: string;
  /** "name.namespace" of the first Service (by the rule above) listing it: the destination_service label. */
  key: string;
  /** Whether its sidecar captures this port (else it is reached in plain TCP). */
  captures(port: number): boolean;
}

export interface RoutingTable {
  config: ProxyConfig;
  /** ClusterIP:port, keyed by `${ip}:${port}` (IPv6 without brackets). */
  byAddress: ReadonlyMap<string, ServiceTarget>;
  /** Keyed by "name.namespace" then service port. */
  byName: ReadonlyMap<string, ReadonlyMap<number, ServiceTarget>>;
  /** Meshed endpoints by `${ip}:${port}` of the endpoint, each a pinned target; ready or not. */
  byEndpoint: ReadonlyMap<string, ServiceTarget>;
  /** Meshed endpoints by address alone. */
  meshedPods: ReadonlyMap<string, MeshedPod>;
}

export const serviceKey = (s: Pick<ServiceConfig, 'name' | 'namespace'>): string => `${s.name}.${s.namespace}`;

/** What a connection to `${ip}:${port}` reaches: a ClusterIP's service port, else a meshed endpoint. */
export function lookupTarget(table: RoutingTable, key: string): ServiceTarget | undefined {
  return table.byAddress.get(key) ?? table.byEndpoint.get(key);
}

/** The order in which Services claim a pod's address:port (see the top of this file). */
export function compareServices(a: ServiceConfig, b: ServiceConfig): number {
  const headless = (s: ServiceConfig): number => (s.clusterIPs.length === 0 ? 0 : 1);
  return headless(a) - headless(b) || cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
}

const isLoopback = (address: string): boolean => address.startsWith('127.') || address === '::1';

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Whether the sidecar of a meshed endpoint captures `port`: not its admin port, nor one of its skipInboundPorts. */
export function capturesPort(e: Pick<Endpoint, 'skipInboundPorts'>): (port: number) => boolean {
  const skipped = (e.skipInboundPorts ?? []).map((item) => {
    const [first = 0, last = first] = item.split('-').map(Number);
    return [first, last] as const;
  });
  return (port) => port !== PORTS.proxyAdmin && !skipped.some(([first, last]) => first <= port && port <= last);
}

const ALL_BUT_ADMIN = capturesPort({});

function resolve(e: Endpoint, port: ServicePort, captures: (port: number) => boolean): ResolvedEndpoint {
  const at = e.ports?.[port.name ?? ''] ?? e.ports?.[String(port.port)] ?? port.targetPort;
  return {
    endpoint: e,
    address: e.address,
    port: at,
    identity: e.identity !== undefined && captures(at) ? e.identity : undefined,
    weight: e.weight ?? 1,
  };
}

export function buildRoutingTable(config: ProxyConfig): RoutingTable {
  const byAddress = new Map<string, ServiceTarget>();
  const byName = new Map<string, Map<number, ServiceTarget>>();
  const byEndpoint = new Map<string, ServiceTarget>();
  const meshedPods = new Map<string, MeshedPod>();
  for (const service of [...config.services].sort(compareServices)) {
    const key = serviceKey(service);
    const ports = new Map<number, ServiceTarget>();
    byName.set(key, ports);
    const captures = service.endpoints.map((e) => (e.skipInboundPorts ? capturesPort(e) : ALL_BUT_ADMIN));
    for (const [i, e] of service.endpoints.entries()) {
      if (e.identity !== undefined && !meshedPods.has(e.address) && !isLoopback(e.address)) meshedPods.set(e.address, { address: e.address, identity: e.identity, key, captures: captures[i]! });
    }
    for (const port of service.ports) {
      const endpoints: ResolvedEndpoint[] = [];
      for (const [i, e] of service.endpoints.entries()) {
        const ep = resolve(e, port, captures[i]!);
        if (e.ready !== false) endpoints.push(ep);
        if (ep.identity === undefined) continue;
        const at = `${ep.address}:${ep.port}`;
        if (!byEndpoint.has(at)) byEndpoint.set(at, { service, port, key, endpoints: [ep], pinned: ep });
      }
      const target: ServiceTarget = { service, port, key, endpoints };
      ports.set(port.port, target);
      for (const ip of service.clusterIPs) byAddress.set(`${ip}:${port.port}`, target);
    }
  }
  return { config, byAddress, byName, byEndpoint, meshedPods };
}
