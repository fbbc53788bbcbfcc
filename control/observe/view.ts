// The mesh as the dashboard and `tsmesh stat` see it, from the proxies'
// scrapes: per workload what its pods answered (inbound), per edge (a
// workload calling a service) what its callers saw (outbound), per proxy its
// certificate's expiry. An edge also carries what its backends answered that
// caller (their inbound metrics) and what the caller's proxy did on the way
// (retries, ejections, overload rejections, faults), so that retries that
// mask failures show. Pure: scrapes in, a view out.
import type { Sample } from '../../lib/prom-text.js';
import { counterIncreases, GoldenAccumulator, type GoldenSignals } from './golden.js';
import type { MetricName } from '../../contract/metrics.js';
import { parseWorkloadSpiffeId } from '../../contract/spiffe.js';

/** A proxy to scrape: its admin /metrics URL and the workload it serves. */
export interface ScrapeTarget {
  workload: string;
  namespace: string;
  url: string;
}

/** One scrape of one proxy. */
export interface Scrape {
  /** Milliseconds since the epoch. */
  at: number;
  samples: Sample[];
}

/** A target with its scrapes in the window (oldest first) and how the last attempt went. */
export interface TargetState {
  target: ScrapeTarget;
  scrapes: readonly Scrape[];
  /** Why the last scrape failed; undefined when it succeeded. */
  error?: string;
}

export interface WorkloadView extends GoldenSignals {
  name: string;
  namespace: string;
  /** Proxies of the workload whose last scrape succeeded, of `pods` known. */
  meshedPods: number;
  pods: number;
  /** The services its pods answered as (their inbound destination_service), ever. */
  services: string[];
}

/** What a caller's requests became at the backends, as their proxies counted them (inbound, from that caller). */
export interface BackendSide {
  requests: number;
  rps: number;
  /** Share of the answers the backends gave that were not failures; null without requests. */
  successRate: number | null;
}

/** What the caller's proxy did for an edge in the window (counts), and the endpoints ejected now. */
export interface EdgeResilience {
  retries: number;
  retryBudgetExhausted: number;
  ejections: number;
  endpointsEjected: number;
  overloadRejections: number;
  faultsInjected: number;
}

/** One backend's share of an edge's requests (a traffic split's canary), by the identity that answered. */
export interface SplitShare {
  identity: string;
  /** `namespace/name` of the answering workload (its ServiceAccount). */
  workload: string;
  share: number;
}

export interface EdgeView extends GoldenSignals {
  /** The calling workload. */
  source: string;
  sourceNamespace: string;
  /** The service called, as `name.namespace`. */
  destination: string;
  /** Every request in the window (or, when there was none, ever) went over mTLS. */
  mtls: boolean;
  sourceIdentities: string[];
  /** The identities that answered (several behind a split). */
  destinationIdentities: string[];
  /** Share of the window's requests made over mTLS (the `tls` label); null without requests. */
  mtlsShare: number | null;
  /** How the window's requests spread over the answering workloads, largest first. */
  split: SplitShare[];
  /** What the backends answered this caller: its success before the caller's proxy retried. */
  backend: BackendSide;
  resilience: EdgeResilience;
}

export interface ProxyView {
  workload: string;
  namespace: string;
  url: string;
  up: boolean;
  error?: string;
  /** When the proxy's certificate expires (ISO 8601); null before it holds one. */
  certExpiresAt: string | null;
  certExpiresInSeconds: number | null;
}

export interface MeshView {
  generatedAt: string;
  /** Seconds the rates are measured over (the widest of the proxies' windows). */
  windowSeconds: number;
  workloads: WorkloadView[];
  edges: EdgeView[];
  proxies: ProxyView[];
}

const REQUESTS: MetricName = 'tsmesh_requests_total';
const BUCKETS = `${'tsmesh_request_duration_seconds' satisfies MetricName}_bucket`;
const CERT_EXPIRY: MetricName = 'tsmesh_identity_cert_expiration_timestamp_seconds';
const RETRIES: MetricName = 'tsmesh_retries_total';
const BUDGET_EXHAUSTED: MetricName = 'tsmesh_retry_budget_exhausted_total';
const EJECTIONS: MetricName = 'tsmesh_endpoint_ejections_total';
const EJECTED: MetricName = 'tsmesh_endpoints_ejected';
const OVERLOADED: MetricName = 'tsmesh_overload_rejections_total';
const FAULTS: MetricName = 'tsmesh_faults_injected_total';
const COUNTERS: ReadonlySet<string> = new Set([REQUESTS, BUCKETS, RETRIES, BUDGET_EXHAUSTED, EJECTIONS, OVERLOADED, FAULTS]);

/** The workload (`namespace/name`) a SPIFFE ID names, or the ID itself when it names none. */
export const identityWorkload = (id: string): string => {
  const w = parseWorkloadSpiffeId(id);
  return w ? `${w.namespace}/${w.serviceAccount}` : id;
};

const total = (samples: readonly Sample[]): number => samples.reduce((a, s) => a + s.value, 0);

/** One proxy's inbound request increases over a window, for the backend side of edges. */
interface InboundWindow {
  seconds: number;
  requests: Sample[];
}

function backendSide(inbound: readonly InboundWindow[], callers: readonly string[], backends: readonly string[]): BackendSide {
  const golden = new GoldenAccumulator();
  const from = new Set(callers);
  const to = new Set(backends);
  const mine = (s: Sample): boolean => from.has(s.labels.source_identity ?? '') && to.has(s.labels.destination_identity ?? '');
  for (const w of inbound) golden.add(w.requests.filter(mine), [], w.seconds);
  const { requests, rps, successRate } = golden.signals();
  return { requests, rps, successRate };
}

function splitShares(window: readonly Sample[]): SplitShare[] {
  const by = new Map<string, number>();
  for (const s of window) by.set(s.labels.destination_identity ?? '', (by.get(s.labels.destination_identity ?? '') ?? 0) + s.value);
  const all = total(window);
  return [...by]
    .filter(([id, n]) => id !== '' && n > 0)
    .map(([identity, n]) => ({ identity, workload: identityWorkload(identity), share: n / all }))
    .sort((a, b) => b.share - a.share || a.identity.localeCompare(b.identity));
}

const emptyResilience = (): EdgeResilience => ({ retries: 0, retryBudgetExhausted: 0, ejections: 0, endpointsEjected: 0, overloadRejections: 0, faultsInjected: 0 });

/** Adds the caller proxy's resilience counters for `service` (increases, and the ejected gauge now). */
function addResilience(into: EdgeResilience, increases: readonly Sample[], now: readonly Sample[], service: string): void {
  const of = (name: string, samples: readonly Sample[]): number =>
    total(samples.filter((s) => s.name === name && s.labels.destination_service === service && (s.labels.direction ?? 'outbound') === 'outbound'));
  into.retries += of(RETRIES, increases);
  into.retryBudgetExhausted += of(BUDGET_EXHAUSTED, increases);
  into.ejections += of(EJECTIONS, increases);
  into.overloadRejections += of(OVERLOADED, increases);
  into.faultsInjected += of(FAULTS, increases);
  into.endpointsEjected += of(EJECTED, now);
}

interface Group {
  golden: GoldenAccumulator;
  /** Request series that grew in the window, and every request series: who talked, over what. */
  window: Sample[];
  ever: Sample[];
}

const newGroup = (): Group => ({ golden: new GoldenAccumulator(), window: [], ever: [] });

/** Adds one proxy's window of one direction to `group`. */
function addToGroup(group: Group, inWindow: readonly Sample[], all: readonly Sample[], buckets: readonly Sample[], seconds: number): void {
  group.golden.add(inWindow, buckets, seconds);
  group.window.push(...inWindow.filter((s) => s.value > 0));
  group.ever.push(...all);
}

/** Whether the group's requests were all mTLS, and between whom; from the window, or from ever when the window saw none. */
function security(group: Group): { mtls: boolean; sourceIdentities: string[]; destinationIdentities: string[] } {
  const seen = group.window.length > 0 ? group.window : group.ever;
  const values = (label: string): string[] => [...new Set(seen.map((s) => s.labels[label] ?? ''))].filter((v) => v !== '').sort();
  return {
    mtls: seen.length > 0 && seen.every((s) => s.labels.tls === 'true'),
    sourceIdentities: values('source_identity'),
    destinationIdentities: values('destination_identity'),
  };
}

const byName = <T>(key: (t: T) => string) => (a: T, b: T): number => key(a).localeCompare(key(b));

export function buildMeshView(states: readonly TargetState[], now: number): MeshView {
  const workloads = new Map<string, { name: string; namespace: string; pods: number; meshedPods: number; services: Set<string>; group: Group }>();
  const edges = new Map<string, { source: string; sourceNamespace: string; destination: string; group: Group; resilience: EdgeResilience }>();
  const inbound: InboundWindow[] = [];
  const proxies: ProxyView[] = [];
  let windowSeconds = 0;

  for (const { target, scrapes, error } of states) {
    const wkey = `${target.namespace}/${target.workload}`;
    const workload = workloads.get(wkey) ?? { name: target.workload, namespace: target.namespace, pods: 0, meshedPods: 0, services: new Set<string>(), group: newGroup() };
    workloads.set(wkey, workload);
    workload.pods += 1;
    if (!error && scrapes.length > 0) workload.meshedPods += 1;

    const last = scrapes.at(-1);
    for (const s of last?.samples ?? []) if (s.name === REQUESTS && s.labels.direction === 'inbound' && s.labels.destination_service) workload.services.add(s.labels.destination_service);
    const expiry = last?.samples.find((s) => s.name === CERT_EXPIRY)?.value;
    proxies.push({
      workload: target.workload,
      namespace: target.namespace,
      url: target.url,
      up: !error && last !== undefined,
      ...(error ? { error } : {}),
      certExpiresAt: expiry ? new Date(expiry * 1000).toISOString() : null,
      certExpiresInSeconds: expiry ? Math.round(expiry - now / 1000) : null,
    });

    const first = scrapes[0];
    if (!last || !first || first === last) continue;
    const seconds = (last.at - first.at) / 1000;
    windowSeconds = Math.max(windowSeconds, seconds);
    const increases = counterIncreases(first.samples, last.samples, COUNTERS);
    const direction = (d: string, name: string) => increases.filter((s) => s.name === name && s.labels.direction === d);
    const everRequests = last.samples.filter((s) => s.name === REQUESTS);

    inbound.push({ seconds, requests: direction('inbound', REQUESTS) });
    addToGroup(workload.group, direction('inbound', REQUESTS), everRequests.filter((s) => s.labels.direction === 'inbound'), direction('inbound', BUCKETS), seconds);

    const outRequests = direction('outbound', REQUESTS);
    const outBuckets = direction('outbound', BUCKETS);
    for (const service of new Set(everRequests.filter((s) => s.labels.direction === 'outbound').map((s) => s.labels.destination_service ?? ''))) {
      const ekey = `${wkey} ${service}`;
      const edge = edges.get(ekey) ?? { source: target.workload, sourceNamespace: target.namespace, destination: service, group: newGroup(), resilience: emptyResilience() };
      edges.set(ekey, edge);
      const mine = (s: Sample): boolean => s.labels.destination_service === service;
      addResilience(edge.resilience, increases, last.samples, service);
      addToGroup(edge.group, outRequests.filter(mine), everRequests.filter((s) => s.labels.direction === 'outbound' && mine(s)), outBuckets.filter(mine), seconds);
    }
  }

  return {
    generatedAt: new Date(now).toISOString(),
    windowSeconds,
    workloads: [...workloads.values()]
      .map((w) => ({ name: w.name, namespace: w.namespace, meshedPods: w.meshedPods, pods: w.pods, services: [...w.services].sort(), ...w.group.golden.signals() }))
      .sort(byName((w) => `${w.namespace}/${w.name}`)),
    edges: [...edges.values()]
      .map((e) => {
        const sec = security(e.group);
        const requests = total(e.group.window);
        return {
          source: e.source,
          sourceNamespace: e.sourceNamespace,
          destination: e.destination,
          ...e.group.golden.signals(),
          ...sec,
          mtlsShare: requests > 0 ? total(e.group.window.filter((s) => s.labels.tls === 'true')) / requests : null,
          split: splitShares(e.group.window),
          backend: backendSide(inbound, sec.sourceIdentities, sec.destinationIdentities),
          resilience: e.resilience,
        };
      })
      .sort(byName((e) => `${e.sourceNamespace}/${e.source} ${e.destination}`)),
    proxies: proxies.sort(byName((p) => `${p.namespace}/${p.workload} ${p.url}`)),
  };
}
