// Services + EndpointSlices + Pods -> ServiceModel (control/model.ts): which
// ports the proxy carries and how (portProtocol), the endpoints of each
// Service with their readiness and, for a pod carrying tsmesh.io/status, the
// identity of its ServiceAccount. Pure; kubernetes-model.ts composes it with
// the policies (kubernetes-policies.ts) into the mesh model.
import type { V1ServicePort } from '@kubernetes/client-node';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import type { PortProtocol, ServicePort } from '../../contract/proxy-config.js';
import { INIT_CONTAINER, STATUS_ANNOTATION } from '../../contract/names.js';
import { parsePortList } from '../../init/ports.js';
import { APP_PROTOCOLS } from '../../contract/vocabulary.js';
import type { EndpointModel, ServiceModel } from '../model.js';
import type { EndpointSliceFields, PodFields, ServiceFields } from './kubernetes-fields.js';

/** Looks a pod up by namespace and name (the informer's cache). */
export type PodLookup = (namespace: string, name: string) => PodFields | undefined;

/**
 * How the proxy treats a Service port: its appProtocol when it names one of
 * APP_PROTOCOLS, else the port name's prefix as Istio reads it (`http`,
 * `http-web`, `grpc-api`, `tcp-db`, `tls`, `https-x`), else auto (detected
 * from the first bytes).
 */
export function portProtocol(p: Pick<V1ServicePort, 'appProtocol' | 'name'>): PortProtocol {
  const app = APP_PROTOCOLS.get(p.appProtocol?.toLowerCase() ?? '');
  if (app) return app;
  return APP_PROTOCOLS.get((p.name ?? '').toLowerCase().split('-')[0]!) ?? 'auto';
}

/**
 * Whether a Service belongs in the model: not ExternalName, and with ports or
 * headless. A headless Service without ports (a StatefulSet's governing
 * Service often has none: its DNS is all it is for) still tells the proxies
 * its pods' addresses and identities.
 */
export function isMeshService(svc: ServiceFields): boolean {
  return svc.spec?.type !== 'ExternalName' && ((svc.spec?.ports?.length ?? 0) > 0 || isHeadless(svc));
}

/** clusterIP None: the Service's DNS name answers with its endpoints' own addresses. */
export function isHeadless(svc: ServiceFields): boolean {
  return svc.spec?.clusterIP === 'None' || svc.spec?.clusterIPs?.[0] === 'None';
}

/** The Service's cluster IPs; a headless Service (clusterIP None) has none. */
export function serviceClusterIPs(svc: ServiceFields): string[] {
  const ips = svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : []);
  return ips.filter((ip) => ip !== '' && ip !== 'None');
}

/** SPIFFE ID of a pod's sidecar, or undefined when the pod is not meshed. */
export function podIdentity(pod: PodFields, trustDomain: string): string | undefined {
  if (pod.metadata?.annotations?.[STATUS_ANNOTATION] === undefined) return undefined;
  return workloadSpiffeId(trustDomain, pod.metadata.namespace ?? 'default', pod.spec?.serviceAccountName || 'default');
}

/**
 * The inbound ports a meshed pod's sidecar does not capture, as its
 * tsmesh-init container applied them (`--skip-inbound-ports`, which the
 * injector writes from tsmesh.io/skip-inbound-ports; the pod's spec, unlike
 * its annotations, cannot change after the fact): "25" or "8000-8100" each.
 * Undefined when there are none or the value does not read as ports (init
 * refused to start with it, so the pod never ran).
 */
export function podSkippedInboundPorts(pod: PodFields): string[] | undefined {
  const args = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER)?.args ?? [];
  const flag = '--skip-inbound-ports';
  const texts: string[] = [];
  for (const [i, a] of args.entries()) {
    if (a.startsWith(`${flag}=`)) texts.push(a.slice(flag.length + 1));
    else if (a === flag && args[i + 1] !== undefined) texts.push(args[i + 1]!);
  }
  try {
    const ranges = texts.flatMap((t) => parsePortList(t));
    const out = [...new Set(ranges.map((r) => (r.first === r.last ? String(r.first) : `${r.first}-${r.last}`)))];
    return out.length > 0 ? out : undefined;
  } catch {
    return undefined;
  }
}

/** What happened to slice endpoints that did not make it into the model (for logs and tests). */
export interface SkippedEndpoint {
  address: string;
  reason: 'pod-unknown' | 'fqdn';
}

/**
 * One Service with its EndpointSlices (those labelled with its name, in its
 * namespace) and the pods they point at -> ServiceModel.
 *
 * - Only TCP ports (the proxy carries TCP); none left: no model, except for a
 *   headless Service, kept with no ports for its endpoints' identities (a
 *   caller's proxy reaches its pods by their addresses, config/table.ts).
 * - Slices of the Service's primary IP family only (one address per pod on a
 *   dual-stack Service); FQDN slices are skipped.
 * - An endpoint whose targetRef is a Pod is meshed when the pod carries
 *   tsmesh.io/status; its identity is the pod's ServiceAccount, and the ports
 *   its sidecar does not capture come with it (podSkippedInboundPorts). A pod the
 *   cache does not hold yet (or a different pod of the same name) leaves the
 *   endpoint out until it is known: guessing "not meshed" would send plain
 *   TCP to a sidecar that requires mTLS. An endpoint without a targetRef
 *   (a hand-made slice) is not meshed.
 * - ready = conditions.ready, where unset means ready (API documentation);
 *   not-ready and terminating endpoints stay in the model with ready false.
 * - A named targetPort takes, per endpoint, the port its slice gives under the
 *   Service port's name; targetPort is the most common of them, and endpoints
 *   that differ carry `ports` (keyed by port name, or the port number as a
 *   string for an unnamed port, as proxy/config/table.ts reads it).
 */
export function serviceModel(svc: ServiceFields, slices: readonly EndpointSliceFields[], podOf: PodLookup, trustDomain: string, skipped: SkippedEndpoint[] = []): ServiceModel | undefined {
  const name = svc.metadata?.name;
  const namespace = svc.metadata?.namespace;
  if (!name || !namespace || !isMeshService(svc)) return undefined;
  const svcPorts = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  if (svcPorts.length === 0 && !isHeadless(svc)) return undefined;

  const family = svc.spec?.ipFamilies?.[0];
  const usable = slices.filter((s) => (s.addressType === 'IPv4' || s.addressType === 'IPv6') && (family === undefined || s.addressType === family));
  for (const s of slices) if (s.addressType === 'FQDN') for (const e of s.endpoints ?? []) skipped.push({ address: e.addresses[0] ?? '', reason: 'fqdn' });

  interface Raw {
    address: string;
    ready: boolean;
    identity: string | undefined;
    skipInboundPorts: string[] | undefined;
    /** service port key -> the port on this endpoint */
    ports: Map<string, number>;
  }
  const byAddress = new Map<string, Raw>();
  for (const slice of usable) {
    for (const ep of slice.endpoints ?? []) {
      const address = ep.addresses[0];
      if (!address) continue;
      let identity: string | undefined;
      let skipInboundPorts: string[] | undefined;
      const ref = ep.targetRef;
      if (ref?.kind === 'Pod' && ref.name) {
        const pod = podOf(ref.namespace ?? namespace, ref.name);
        if (!pod || (ref.uid && pod.metadata?.uid && ref.uid !== pod.metadata.uid)) {
          skipped.push({ address, reason: 'pod-unknown' });
          continue;
        }
        identity = podIdentity(pod, trustDomain);
        if (identity) skipInboundPorts = podSkippedInboundPorts(pod);
      }
      const ready = ep.conditions?.ready !== false;
      const ports = new Map<string, number>();
      for (const sp of svcPorts) {
        const key = sp.name ?? '';
        const found = slice.ports?.find((p) => (p.name ?? '') === key && (p.protocol ?? 'TCP') === 'TCP');
        if (found?.port !== undefined) ports.set(key, found.port);
      }
      const prev = byAddress.get(address);
      if (prev) {
        prev.ready ||= ready;
        for (const [k, v] of ports) if (!prev.ports.has(k)) prev.ports.set(k, v);
      } else {
        byAddress.set(address, { address, ready, identity, skipInboundPorts, ports });
      }
    }
  }

  const raws = [...byAddress.values()].sort((a, b) => compareAddresses(a.address, b.address));
  const ports: ServicePort[] = svcPorts.map((sp) => {
    const key = sp.name ?? '';
    let targetPort: number;
    if (typeof sp.targetPort === 'number') targetPort = sp.targetPort;
    else if (sp.targetPort === undefined || sp.targetPort === '') targetPort = sp.port;
    else if (/^\d+$/.test(sp.targetPort)) targetPort = Number(sp.targetPort);
    else targetPort = mostCommon(raws.map((r) => r.ports.get(key)).filter((p): p is number => p !== undefined)) ?? sp.port;
    return { port: sp.port, ...(sp.name ? { name: sp.name } : {}), protocol: portProtocol(sp), targetPort };
  });
  const endpoints: EndpointModel[] = raws.map((r) => {
    const overrides: Record<string, number> = {};
    for (const [i, sp] of svcPorts.entries()) {
      const key = sp.name ?? '';
      const p = r.ports.get(key);
      if (p !== undefined && p !== ports[i]!.targetPort) overrides[sp.name ? sp.name : String(sp.port)] = p;
    }
    return {
      address: r.address,
      ...(r.identity ? { identity: r.identity } : {}),
      ...(Object.keys(overrides).length > 0 ? { ports: overrides } : {}),
      ready: r.ready,
      ...(r.skipInboundPorts ? { skipInboundPorts: r.skipInboundPorts } : {}),
    };
  });
  return { name, namespace, clusterIPs: serviceClusterIPs(svc), ports, endpoints };
}

function mostCommon(values: readonly number[]): number | undefined {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: number | undefined;
  let bestCount = 0;
  for (const [v, c] of counts) if (c > bestCount || (c === bestCount && best !== undefined && v < best)) [best, bestCount] = [v, c];
  return best;
}

/** Orders IPv4 before IPv6, then by text: a stable order so equal models compare equal. */
export function compareAddresses(a: string, b: string): number {
  const fa = a.includes(':') ? 1 : 0;
  const fb = b.includes(':') ? 1 : 0;
  return fa - fb || a.localeCompare(b, 'en', { numeric: true });
}
