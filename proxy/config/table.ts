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
// that pod with its identity (`pods`; not for loopback addresses, which
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

/**
 * A meshed endpoint's address: the Service ports on it (each reached as a
 * target pinned to it) and, for its other ports, opaque TCP over mTLS.
 */
export interface MeshedPod {
  address: string;
  identity: string;
  /** "name.namespace" of the first Service (by the rule above) listing it: the destination_service label of its other ports. */
  key: string;
  /**
   * Whether a port of it that no Service names is carried as opaque TCP over
   * mTLS: its sidecar captures the port (not its admin port, nor one of its
   * skipInboundPorts), and the address is no loopback one.
   */
  opaqueMtls(port: number): boolean;
  /** The Service ports on it, by the port on the pod, in the order of the rule: the first of a port wins. */
  ports: readonly PodPort[];
}

export interface PodPort {
  /** The port on the pod. */
  port: number;
  /** The service port's target (balanced over its endpoints). */
  target: ServiceTarget;
  endpoint: ResolvedEndpoint;
  /** The target pinned to this endpoint, made on the first connection to it. */
  pinned?: ServiceTarget;
}

export interface RoutingTable {
  config: ProxyConfig;
  /** ClusterIP:port, keyed by `${ip}:${port}` (IPv6 without brackets). */
  byAddress: ReadonlyMap<string, ServiceTarget>;
  /** Keyed by "name.namespace" then service port. */
  byName: ReadonlyMap<string, ReadonlyMap<number, ServiceTarget>>;
  /**
   * Meshed endpoints by address, ready or not. Keyed by the address alone,
   * a string the config already holds: a key per address and port, made
   * for every endpoint of every service at every config, cost the proxy
   * 20 times the build time of the rest of the table at 10,000 endpoints.
   */
  pods: ReadonlyMap<string, MeshedPod>;
}

export const serviceKey = (s: Pick<ServiceConfig, 'name' | 'namespace'>): string => `${s.name}.${s.namespace}`;

/**
 * What a connection to address:port reaches: a ClusterIP's service port, else
 * a meshed endpoint's, pinned to it. `key` is `${address}:${port}`, for a
 * caller that keeps it across lookups.
 */
export function lookupTarget(table: RoutingTable, address: string, port: number, key = `${address}:${port}`): ServiceTarget | undefined {
  return table.byAddress.get(key) ?? pinnedTarget(table, address, port);
}

/** The target pinned to the meshed endpoint at address:port, when a Service names that port of it. */
export function pinnedTarget(table: RoutingTable, address: string, port: number): ServiceTarget | undefined {
  const p = table.pods.get(address)?.ports.find((x) => x.port === port);
  if (!p) return undefined;
  return (p.pinned ??= { service: p.target.service, port: p.target.port, key: p.target.key, endpoints: [p.endpoint], pinned: p.endpoint });
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
const NONE = (): boolean => false;
const NO_PORTS: readonly PodPort[] = [];

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
  const pods = new Map<string, MeshedPod>();
  for (const service of [...config.services].sort(compareServices)) {
    const key = serviceKey(service);
    const ports = new Map<number, ServiceTarget>();
    byName.set(key, ports);
    const { endpoints } = service;
    const captures: ((port: number) => boolean)[] = [];
    const podOf: (MeshedPod | undefined)[] = [];
    for (const e of endpoints) {
      const c = e.skipInboundPorts ? capturesPort(e) : ALL_BUT_ADMIN;
      captures.push(c);
      let pod: MeshedPod | undefined;
      if (e.identity !== undefined) {
        pod = pods.get(e.address);
        if (!pod) pods.set(e.address, (pod = { address: e.address, identity: e.identity, key, opaqueMtls: isLoopback(e.address) ? NONE : c, ports: NO_PORTS }));
      }
      podOf.push(pod);
    }
    for (const port of service.ports) {
      const target: ServiceTarget = { service, port, key, endpoints: [] };
      for (let i = 0; i < endpoints.length; i++) {
        const e = endpoints[i]!;
        const ep = resolve(e, port, captures[i]!);
        if (e.ready !== false) target.endpoints.push(ep);
        const pod = podOf[i];
        // A new array of the exact size: most pods have a port or two, and a pushed-to array keeps room for 17.
        if (pod !== undefined && ep.identity !== undefined && !hasPort(pod.ports, ep.port)) pod.ports = [...pod.ports, { port: ep.port, target, endpoint: ep }];
      }
      ports.set(port.port, target);
      for (const ip of service.clusterIPs) byAddress.set(`${ip}:${port.port}`, target);
    }
  }
  return { config, byAddress, byName, pods };
}

function hasPort(ports: readonly PodPort[], port: number): boolean {
  for (const p of ports) if (p.port === port) return true;
  return false;
}
