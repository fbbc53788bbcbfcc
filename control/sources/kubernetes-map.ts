// Pure mapping from Kubernetes objects to the mesh model (control/model.ts):
// Services + EndpointSlices + Pods -> ServiceModel, the tsmesh.io policies ->
// policy models plus a verdict per policy (the Accepted condition), ConfigMap
// tsmesh-config -> MeshSettings. No I/O here; kubernetes.ts feeds it from
// informers and status.ts writes the verdicts.
import type { V1ConfigMap, V1EndpointSlice, V1ObjectMeta, V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { MAX_TTL_SECONDS, MIN_TTL_SECONDS } from '../../ca/authority.js';
import { workloadSpiffeId, DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { parseDuration } from '../../lib/duration.js';
import { ValidationError, describe, list, object, oneOf, string } from '../../lib/schema.js';
import { parseAuthorizationRule, parseMeshSettings, parseTrafficPolicy } from '../../contract/validate.js';
import { DEFAULT_RETRY_BUDGET, type AuthorizationRule, type MeshSettings, type PortProtocol, type ServicePort, type TrafficPolicySpec, FIELDS } from '../../contract/proxy-config.js';
import { STATUS_ANNOTATION, MESH_CONFIG_KEYS } from '../../contract/names.js';
import type { AuthorizationPolicyModel, EndpointModel, MeshModel, ServiceModel, TrafficPolicyModel } from '../model.js';
import { resolveTrafficPolicies } from '../snapshot.js';


// ---------------------------------------------------------------------------
// Services and endpoints

/** Looks a pod up by namespace and name (the informer's cache). */
export type PodLookup = (namespace: string, name: string) => V1Pod | undefined;

const APP_PROTOCOLS: ReadonlyMap<string, PortProtocol> = new Map([
  ['http', 'http'],
  // WebSocket: the HTTP/1.1 path does not carry Upgrade, so L4 over mTLS.
  ['kubernetes.io/ws', 'tcp'],
  ['http2', 'http2'],
  ['h2c', 'http2'],
  ['kubernetes.io/h2c', 'http2'],
  ['grpc', 'http2'],
  ['tcp', 'tcp'],
  ['tls', 'tcp'],
  ['https', 'tcp'],
  ['kubernetes.io/wss', 'tcp'],
]);

/**
 * How the proxy treats a Service port: its appProtocol when it names one we
 * know, else the port name's prefix as Istio reads it (`http`, `http-web`,
 * `grpc-api`, `tcp-db`, `tls`, `https-x`), else auto (detected from the
 * first bytes). TLS and HTTPS are the app's own TLS: opaque to the proxy.
 */
export function portProtocol(p: Pick<V1ServicePort, 'appProtocol' | 'name'>): PortProtocol {
  const app = APP_PROTOCOLS.get(p.appProtocol?.toLowerCase() ?? '');
  if (app) return app;
  return APP_PROTOCOLS.get((p.name ?? '').toLowerCase().split('-')[0]!) ?? 'auto';
}

/** Whether a Service belongs in the model: it has ports and is not ExternalName. */
export function isMeshService(svc: V1Service): boolean {
  return svc.spec?.type !== 'ExternalName' && (svc.spec?.ports?.length ?? 0) > 0;
}

/** The Service's cluster IPs; a headless Service (clusterIP None) has none. */
export function serviceClusterIPs(svc: V1Service): string[] {
  const ips = svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : []);
  return ips.filter((ip) => ip !== '' && ip !== 'None');
}

/** SPIFFE ID of a pod's sidecar, or undefined when the pod is not meshed. */
export function podIdentity(pod: V1Pod, trustDomain: string): string | undefined {
  if (pod.metadata?.annotations?.[STATUS_ANNOTATION] === undefined) return undefined;
  return workloadSpiffeId(trustDomain, pod.metadata.namespace ?? 'default', pod.spec?.serviceAccountName || 'default');
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
 * - Only TCP ports (the proxy carries TCP); none left: no model.
 * - Slices of the Service's primary IP family only (one address per pod on a
 *   dual-stack Service); FQDN slices are skipped.
 * - An endpoint whose targetRef is a Pod is meshed when the pod carries
 *   tsmesh.io/status; its identity is the pod's ServiceAccount. A pod the
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
export function serviceModel(svc: V1Service, slices: readonly V1EndpointSlice[], podOf: PodLookup, trustDomain: string, skipped: SkippedEndpoint[] = []): ServiceModel | undefined {
  const name = svc.metadata?.name;
  const namespace = svc.metadata?.namespace;
  if (!name || !namespace || !isMeshService(svc)) return undefined;
  const svcPorts = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  if (svcPorts.length === 0) return undefined;

  const family = svc.spec?.ipFamilies?.[0];
  const usable = slices.filter((s) => (s.addressType === 'IPv4' || s.addressType === 'IPv6') && (family === undefined || s.addressType === family));
  for (const s of slices) if (s.addressType === 'FQDN') for (const e of s.endpoints ?? []) skipped.push({ address: e.addresses[0] ?? '', reason: 'fqdn' });

  interface Raw {
    address: string;
    ready: boolean;
    identity: string | undefined;
    /** service port key -> the port on this endpoint */
    ports: Map<string, number>;
  }
  const byAddress = new Map<string, Raw>();
  for (const slice of usable) {
    for (const ep of slice.endpoints ?? []) {
      const address = ep.addresses[0];
      if (!address) continue;
      let identity: string | undefined;
      const ref = ep.targetRef;
      if (ref?.kind === 'Pod' && ref.name) {
        const pod = podOf(ref.namespace ?? namespace, ref.name);
        if (!pod || (ref.uid && pod.metadata?.uid && ref.uid !== pod.metadata.uid)) {
          skipped.push({ address, reason: 'pod-unknown' });
          continue;
        }
        identity = podIdentity(pod, trustDomain);
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
        byAddress.set(address, { address, ready, identity, ports });
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

// ---------------------------------------------------------------------------
// Policies

/** A tsmesh.io policy object as the API returns it (spec unchecked). */
export interface PolicyObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: unknown;
  status?: PolicyStatus;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface PolicyStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export const ACCEPTED = 'Accepted';
export type AcceptedReason = 'Accepted' | 'InvalidSpec' | 'TargetNotFound' | 'Conflict';

/** What the control plane concluded about one policy object: its Accepted condition. */
export interface Verdict {
  kind: 'TrafficPolicy' | 'AuthorizationPolicy';
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  accepted: boolean;
  reason: AcceptedReason;
  message: string;
}

/** The last spec of a policy object that was accepted: what stays in force while a later one cannot be applied. */
export interface AcceptedPolicy<M> {
  generation: number;
  model: M;
}

export interface AcceptedPolicies {
  traffic: Map<string, AcceptedPolicy<TrafficPolicyModel>>;
  authorization: Map<string, AcceptedPolicy<AuthorizationPolicyModel>>;
}

export function emptyAccepted(): AcceptedPolicies {
  return { traffic: new Map(), authorization: new Map() };
}

const EMPTY_MODEL: MeshModel = {
  mesh: { trustDomain: DEFAULT_TRUST_DOMAIN, mtlsMode: 'STRICT', retryBudget: DEFAULT_RETRY_BUDGET },
  services: [],
  trafficPolicies: [],
  authorizationPolicies: [],
};

const iso = (t: Date | string | undefined): string | undefined => (t === undefined ? undefined : typeof t === 'string' ? t : t.toISOString());

function targetRef(v: unknown, kinds: readonly ('Service' | 'ServiceAccount')[]): { kind: 'Service' | 'ServiceAccount'; name: string } {
  const t = object(v, 'spec.targetRef', ['kind', 'name']);
  return { kind: oneOf(t.kind, 'spec.targetRef.kind', kinds), name: string(t.name, 'spec.targetRef.name') };
}

/** A TrafficPolicy object -> its model; throws ValidationError naming the field (`spec.retries.backoff.max: ...`). */
export function trafficPolicyModel(obj: PolicyObject): TrafficPolicyModel {
  const md = obj.metadata ?? {};
  const spec = object(obj.spec, 'spec', ['targetRef', ...FIELDS.TrafficPolicy]);
  const { targetRef: ref, ...rest } = spec;
  const target = targetRef(ref, ['Service']);
  const parsed: TrafficPolicySpec = parseTrafficPolicy(rest, 'spec');
  const createdAt = iso(md.creationTimestamp);
  return { name: md.name ?? '', namespace: md.namespace ?? '', targetService: target.name, spec: parsed, ...(createdAt ? { createdAt } : {}) };
}

/** An AuthorizationPolicy object -> its model; throws ValidationError naming the field. */
export function authorizationPolicyModel(obj: PolicyObject): AuthorizationPolicyModel {
  const md = obj.metadata ?? {};
  const spec = object(obj.spec, 'spec', ['targetRef', 'rules']);
  const target = targetRef(spec.targetRef, ['Service', 'ServiceAccount']);
  const rules: AuthorizationRule[] = list(spec.rules, 'spec.rules', parseAuthorizationRule, false);
  if (rules.length === 0) throw new ValidationError('spec.rules', 'give at least one rule');
  return { name: md.name ?? '', namespace: md.namespace ?? '', target, rules };
}

export interface PolicyInput {
  trafficPolicies: readonly PolicyObject[];
  authorizationPolicies: readonly PolicyObject[];
  /** "namespace/name" of every Service in the model. */
  services: ReadonlySet<string>;
  /** Last accepted spec per policy uid; not modified. */
  accepted: AcceptedPolicies;
}

export interface PolicyResult {
  trafficPolicies: TrafficPolicyModel[];
  authorizationPolicies: AuthorizationPolicyModel[];
  verdicts: Verdict[];
  /** The accepted specs to remember for the next round (policies that no longer exist are dropped). */
  accepted: AcceptedPolicies;
}

const keyOf = (m: { namespace: string; name: string }): string => `${m.namespace}/${m.name}`;
const byKey = <T extends { namespace: string; name: string }>(a: T, b: T): number => keyOf(a).localeCompare(keyOf(b));

/**
 * Which policies go into the model, and the verdict on each.
 *
 * A policy whose current spec cannot be applied (InvalidSpec: the schema let
 * it through but validate.ts does not; TargetNotFound: no such Service in its
 * namespace; Conflict: an older TrafficPolicy already governs that Service)
 * is Accepted=False. In its place the model keeps the last spec of the SAME
 * object that was accepted (its `accepted` entry), if it has one: editing a
 * working policy into a broken one leaves the working one in force, as the
 * status message says. A policy that was never accepted is simply absent.
 * Remembered specs compete like current ones: an older policy's remembered
 * spec still wins a conflict against a newer policy.
 *
 * ServiceAccount targets are not checked for existence (a policy may be
 * written before its workload; the control plane does not watch
 * ServiceAccounts).
 */
export function evaluatePolicies(input: PolicyInput): PolicyResult {
  const verdicts: Verdict[] = [];
  const accepted = emptyAccepted();

  const meta = (o: PolicyObject) => ({
    namespace: o.metadata?.namespace ?? '',
    name: o.metadata?.name ?? '',
    uid: o.metadata?.uid ?? keyOf({ namespace: o.metadata?.namespace ?? '', name: o.metadata?.name ?? '' }),
    generation: o.metadata?.generation ?? 0,
  });
  const inForce = (prev: AcceptedPolicy<unknown> | undefined): string =>
    prev ? `; the spec accepted at generation ${prev.generation} stays in force` : '; the policy is not applied';

  // TrafficPolicies: check each, then settle conflicts among what would apply.
  interface Traffic {
    m: ReturnType<typeof meta>;
    prev: AcceptedPolicy<TrafficPolicyModel> | undefined;
    /** The current spec, when it is valid and its Service exists. */
    current: TrafficPolicyModel | undefined;
    /** What competes for the Service: the current spec, or the remembered one. */
    candidate: TrafficPolicyModel | undefined;
    /** Why the current spec lost a conflict. */
    conflict?: string;
  }
  const traffic: Traffic[] = [];
  for (const obj of input.trafficPolicies) {
    const m = meta(obj);
    const prev = input.accepted.traffic.get(m.uid);
    let model: TrafficPolicyModel;
    try {
      model = trafficPolicyModel(obj);
    } catch (e) {
      verdicts.push({ kind: 'TrafficPolicy', ...m, accepted: false, reason: 'InvalidSpec', message: `${(e as Error).message}${inForce(prev)}` });
      traffic.push({ m, prev, current: undefined, candidate: prev?.model });
      continue;
    }
    if (!input.services.has(`${m.namespace}/${model.targetService}`)) {
      verdicts.push({ kind: 'TrafficPolicy', ...m, accepted: false, reason: 'TargetNotFound', message: `Service ${model.targetService} not found in namespace ${m.namespace}${inForce(prev)}` });
      traffic.push({ m, prev, current: undefined, candidate: prev?.model });
      continue;
    }
    traffic.push({ m, prev, current: model, candidate: model });
  }
  // A current spec that loses falls back to the policy's remembered spec, which
  // competes in turn (it may target another Service, and win or lose there).
  // Each policy falls back at most once, so this ends.
  let winners: Set<TrafficPolicyModel>;
  for (;;) {
    // resolveTrafficPolicies reads only trafficPolicies.
    const candidates = traffic.flatMap((t) => (t.candidate ? [t.candidate] : []));
    const { byService, conflicts } = resolveTrafficPolicies({ ...EMPTY_MODEL, trafficPolicies: candidates });
    winners = new Set(byService.values());
    let changed = false;
    for (const c of conflicts) {
      const t = traffic.find((x) => x.candidate === c.policy)!;
      if (t.candidate === t.current && t.current !== undefined) {
        t.conflict = c.reason;
        if (t.prev) {
          t.candidate = t.prev.model;
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const trafficPolicies: TrafficPolicyModel[] = [];
  for (const t of traffic) {
    if (t.candidate && winners.has(t.candidate)) trafficPolicies.push(t.candidate);
    if (t.current && t.candidate === t.current && winners.has(t.current)) {
      accepted.traffic.set(t.m.uid, { generation: t.m.generation, model: t.current });
      verdicts.push({ kind: 'TrafficPolicy', ...t.m, accepted: true, reason: 'Accepted', message: `applied to Service ${t.current.targetService}` });
      continue;
    }
    if (t.current) {
      verdicts.push({ kind: 'TrafficPolicy', ...t.m, accepted: false, reason: 'Conflict', message: `${t.conflict ?? 'conflicts with another policy'}${inForce(t.prev)}` });
    }
    // Not applied now: remember the last accepted spec for as long as the object exists.
    if (t.prev) accepted.traffic.set(t.m.uid, t.prev);
  }

  // AuthorizationPolicies: no conflicts (every selecting policy adds rules).
  const authorizationPolicies: AuthorizationPolicyModel[] = [];
  for (const obj of input.authorizationPolicies) {
    const m = meta(obj);
    const prev = input.accepted.authorization.get(m.uid);
    const base = { kind: 'AuthorizationPolicy' as const, ...m };
    let model: AuthorizationPolicyModel;
    try {
      model = authorizationPolicyModel(obj);
    } catch (e) {
      verdicts.push({ ...base, accepted: false, reason: 'InvalidSpec', message: `${(e as Error).message}${inForce(prev)}` });
      if (prev) {
        authorizationPolicies.push(prev.model);
        accepted.authorization.set(m.uid, prev);
      }
      continue;
    }
    if (model.target.kind === 'Service' && !input.services.has(`${m.namespace}/${model.target.name}`)) {
      verdicts.push({ ...base, accepted: false, reason: 'TargetNotFound', message: `Service ${model.target.name} not found in namespace ${m.namespace}${inForce(prev)}` });
      if (prev) {
        authorizationPolicies.push(prev.model);
        accepted.authorization.set(m.uid, prev);
      }
      continue;
    }
    authorizationPolicies.push(model);
    accepted.authorization.set(m.uid, { generation: m.generation, model });
    verdicts.push({
      ...base,
      accepted: true,
      reason: 'Accepted',
      message: `applied to the workloads of ${model.target.kind} ${model.target.name}`,
    });
  }

  trafficPolicies.sort(byKey);
  authorizationPolicies.sort(byKey);
  verdicts.sort((a, b) => a.kind.localeCompare(b.kind) || keyOf(a).localeCompare(keyOf(b)));
  return { trafficPolicies, authorizationPolicies, verdicts, accepted };
}

// ---------------------------------------------------------------------------
// Mesh-wide settings

/**
 * Keys of ConfigMap tsmesh-config (all optional):
 *
 * | key | value | default |
 * | --- | --- | --- |
 * | `mtlsMode` | `STRICT` or `PERMISSIVE`: what proxies do with plain inbound traffic | `STRICT` |
 * | `retryBudget` | YAML or JSON mapping `{ratio: 0-1, minRetriesPerSecond: 0-10000, ttl: duration}`: the budget of retries a policy sets none for | `{ratio: 0.2, minRetriesPerSecond: 10, ttl: 10s}` |
 * | `certificateTtl` | duration, 1m to 30d: lifetime of the certificates the CA issues from then on; wins over `--cert-ttl` (control/cert-ttl.ts) | the CA's `--cert-ttl` |
 * | `trustDomain` | must equal the control plane's `--trust-domain` (identities come from the CA, which cannot change it at run time) | that |
 *
 * Any other key is refused, as is a bad value: the whole ConfigMap is then
 * ignored and the last good settings stay in force.
 */

export interface MeshConfig {
  mesh: MeshSettings;
  /** Seconds; undefined: the CA's own default. */
  certificateTtlSeconds?: number;
}

/** ConfigMap tsmesh-config (or its absence) -> settings; throws ValidationError naming `data.<key>`. */
export function parseMeshConfigMap(cm: V1ConfigMap | undefined, trustDomain: string): MeshConfig {
  const data = object(cm?.data ?? {}, 'data', MESH_CONFIG_KEYS);
  if (data.trustDomain !== undefined && data.trustDomain !== trustDomain)
    throw new ValidationError('data.trustDomain', `${describe(data.trustDomain)} differs from the control plane's trust domain ${JSON.stringify(trustDomain)}; change --trust-domain instead, or remove the key`);
  let retryBudget: unknown;
  if (data.retryBudget !== undefined) {
    try {
      retryBudget = parseYaml(String(data.retryBudget));
    } catch (e) {
      throw new ValidationError('data.retryBudget', `not YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const mesh = parseMeshSettings({ trustDomain, ...(data.mtlsMode !== undefined ? { mtlsMode: data.mtlsMode } : {}), ...(retryBudget !== undefined ? { retryBudget } : {}) }, 'data');
  const out: MeshConfig = { mesh };
  if (data.certificateTtl !== undefined) {
    const text = string(data.certificateTtl, 'data.certificateTtl');
    let ms: number;
    try {
      ms = parseDuration(text, 'certificateTtl');
    } catch (e) {
      throw new ValidationError('data.certificateTtl', (e as Error).message);
    }
    const seconds = Math.floor(ms / 1000);
    if (seconds < MIN_TTL_SECONDS || seconds > MAX_TTL_SECONDS)
      throw new ValidationError('data.certificateTtl', `${text} is outside ${MIN_TTL_SECONDS}s to ${MAX_TTL_SECONDS / 86_400}d`);
    out.certificateTtlSeconds = seconds;
  }
  return out;
}
