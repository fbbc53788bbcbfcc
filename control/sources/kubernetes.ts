// The mesh from the Kubernetes API: informers (list + watch, restarted with
// backoff after errors; see kubernetes-informer.ts) on Services,
// EndpointSlices, Pods, Namespaces (for their annotations), the tsmesh.io
// TrafficPolicies and AuthorizationPolicies, the Gateway API's HTTPRoutes and
// GRPCRoutes, and ConfigMap tsmesh-config. The kinds that grow with the
// cluster (Services, EndpointSlices, Pods, Namespaces) are cached as the
// fields the mapping reads (kubernetes-fields.ts). Every change schedules
// a rebuild of the whole MeshModel from the caches (kubernetes-model.ts does
// the mapping, with kubernetes-services.ts and kubernetes-policies.ts;
// tsmesh-config is read by kubernetes-mesh-config.ts), debounced so a burst
// of events gives one model; a model equal to the last one is not emitted.
// The policies' verdicts go to their status (control/status.ts), the routes'
// to theirs (control/route-status.ts).
//
// Readiness: no model exists (current() is undefined, notReady() says which
// resources) until every informer has listed once. A CRD that is not
// installed counts as an empty list, so discovery works without policies or
// the Gateway API; its watch is retried with backoff (at most 30 s apart) and
// picks the kind up once its CRD is installed.
//
// Services: every Service except ExternalName ones; a headless Service is in
// the model with no clusterIPs (its endpoints still carry identities, so
// AuthorizationPolicies that target it select its workloads).
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig, type KubernetesListObject, type V1ConfigMap, type V1EndpointSlice, type V1Namespace, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/log.js';
import type { MeshModel } from '../model.js';
import { EventRecorder } from '../events.js';
import { PolicyStatusWriter } from '../status.js';
import { RouteStatusWriter } from '../route-status.js';
import type { AcceptedRoutes, RouteObject, RouteVerdict } from './kubernetes-routes.js';
import { ResilientInformer, watchErrorsCounter, type InformerOptions } from './kubernetes-informer.js';
import { endpointSliceFields, namespaceFields, podFields, serviceFields, type EndpointSliceFields, type NamespaceFields, type PodFields, type ServiceFields } from './kubernetes-fields.js';
import { parseMeshConfigMap, type MeshConfig } from './kubernetes-mesh-config.js';
import { emptyAccepted, type AcceptedPolicies, type PolicyObject, type Verdict } from './kubernetes-policies.js';
import { meshModelFromObjects } from './kubernetes-model.js';
import { emptyLastGood, type LastGoodSettings } from './kubernetes-settings.js';
import { AUTHORIZATION_POLICY_PLURAL, GATEWAY_API_GROUP, GATEWAY_API_PLURALS, GATEWAY_API_VERSION, MESH_CONFIG_NAME, MESH_NAMESPACE, POLICY_GROUP, POLICY_VERSION, TRAFFIC_POLICY_PLURAL } from '../../contract/names.js';
import type { MeshSource } from './source.js';

export interface KubernetesSourceOptions {
  kc: KubeConfig;
  /** The CA's trust domain: endpoint identities are spiffe://<trustDomain>/ns/<ns>/sa/<sa>. */
  trustDomain: string;
  /** Where tsmesh_control_watch_errors_total{resource} is registered. */
  registry: Registry;
  log: Logger;
  /** Namespace of ConfigMap tsmesh-config (default tsmesh-system). */
  namespace?: string;
  /** Quiet time after the last event before a rebuild (default 50 ms). */
  debounceMs?: number;
  /** A steady stream of events still gives a rebuild this often (default 200 ms). */
  maxDelayMs?: number;
  /** Rebuild from the caches and re-check statuses this often even without events (default 5 min). */
  resyncMs?: number;
  /** Write to the API (default true): the policies' status conditions, and a Warning Event on a refused ConfigMap tsmesh-config. */
  writeStatus?: boolean;
  /** This replica (its pod name), the source host of its Events; default the hostname. */
  instance?: string;
  /** Whether this replica writes now (the leader, when several run); default always. */
  isWriter?: () => boolean;
  /** Backoff of watch restarts (default 500 ms doubling to 30 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Bounds of each watch's random server-side timeout, in seconds (default 300 to 600). */
  watchTimeoutSeconds?: [number, number];
  /** How long past the longest watch timeout an informer may show no progress before it is restarted (tests). */
  stallMarginMs?: number;
}

export interface KubernetesMeshSource extends MeshSource {
  /** Resolves with the first model, once every resource has been listed. */
  synced(): Promise<MeshModel>;
  /** Why there is no model yet (for /readyz); undefined once there is. */
  notReady(): string | undefined;
  /** certificateTtl from tsmesh-config, in seconds; undefined when unset. */
  certificateTtlSeconds(): number | undefined;
  /**
   * Called with the mesh settings each time ConfigMap tsmesh-config is read and
   * accepted (its absence too: the defaults); never for a refused one, whose
   * error is logged while the last good settings stay. Returns an unsubscribe function.
   */
  onMeshConfig(listener: (config: MeshConfig) => void): () => void;
  /** The latest verdict on each policy (what its Accepted condition says or is about to say). */
  verdicts(): readonly Verdict[];
  /** The latest verdict on each Gateway API route's Service parentRefs. */
  routeVerdicts(): readonly RouteVerdict[];
}

/** The reason of the Warning Event on a refused ConfigMap tsmesh-config. */
export const INVALID_CONFIG = 'InvalidConfig';

/** CustomObjectsApi lists are untyped. */
const listOf = <T extends PolicyObject | RouteObject>(p: Promise<unknown>): Promise<KubernetesListObject<T>> => p as Promise<KubernetesListObject<T>>;

export function createKubernetesSource(opts: KubernetesSourceOptions): KubernetesMeshSource {
  return new KubernetesSource(opts);
}

class KubernetesSource implements KubernetesMeshSource {
  private readonly services: ResilientInformer<ServiceFields, V1Service>;
  private readonly slices: ResilientInformer<EndpointSliceFields, V1EndpointSlice>;
  private readonly pods: ResilientInformer<PodFields, V1Pod>;
  private readonly namespaces: ResilientInformer<NamespaceFields, V1Namespace>;
  private readonly trafficPolicies: ResilientInformer<PolicyObject>;
  private readonly authorizationPolicies: ResilientInformer<PolicyObject>;
  private readonly meshConfigMap: ResilientInformer<V1ConfigMap>;
  private readonly httpRoutes: ResilientInformer<RouteObject>;
  private readonly grpcRoutes: ResilientInformer<RouteObject>;
  private readonly routeStatusWriter: RouteStatusWriter | undefined;
  private lastRouteVerdicts: RouteVerdict[] = [];
  private acceptedRoutes: AcceptedRoutes = new Map();
  private readonly informers: Pick<ResilientInformer<never>, 'resource' | 'synced' | 'start' | 'stop'>[];
  private readonly listeners = new Set<(m: MeshModel) => void>();
  private readonly meshConfigListeners = new Set<(c: MeshConfig) => void>();
  private readonly statusWriter: PolicyStatusWriter | undefined;
  private readonly events: EventRecorder | undefined;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private model: MeshModel | undefined;
  private modelJson = '';
  private lastVerdicts: Verdict[] = [];
  private accepted: AcceptedPolicies = emptyAccepted();
  private lastGoodSettings: LastGoodSettings = emptyLastGood();
  /** The settings problems last logged, so each is logged once while it lasts. */
  private settingsProblems = new Set<string>();
  private meshConfig: MeshConfig;
  private meshConfigVersion: string | undefined = '';
  private timer: NodeJS.Timeout | undefined;
  private burstStart = 0;
  private readonly resyncTimer: NodeJS.Timeout;
  private closed = false;
  private readonly syncWaiters: ((m: MeshModel) => void)[] = [];

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.log = opts.log;
    this.debounceMs = opts.debounceMs ?? 50;
    this.maxDelayMs = opts.maxDelayMs ?? 200;
    this.meshConfig = parseMeshConfigMap(undefined, opts.trustDomain);
    const { kc } = opts;
    const core = kc.makeApiClient(CoreV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const namespace = opts.namespace ?? MESH_NAMESPACE;
    const informerOpts: InformerOptions = {
      log: opts.log,
      errors: watchErrorsCounter(opts.registry),
      onChange: () => this.schedule(),
      ...(opts.backoffInitialMs !== undefined ? { backoffInitialMs: opts.backoffInitialMs } : {}),
      ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
      ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
      ...(opts.stallMarginMs !== undefined ? { stallMarginMs: opts.stallMarginMs } : {}),
    };
    const policyPath = (plural: string): string => `/apis/${POLICY_GROUP}/${POLICY_VERSION}/${plural}`;
    // The kinds that grow with the cluster are cached as the fields the mapping reads (kubernetes-fields.ts).
    this.services = new ResilientInformer(kc, { resource: 'services', path: '/api/v1/services', list: (page) => core.listServiceForAllNamespaces(page), keep: serviceFields }, informerOpts);
    this.slices = new ResilientInformer(
      kc,
      { resource: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', list: (page) => discovery.listEndpointSliceForAllNamespaces(page), keep: endpointSliceFields },
      informerOpts,
    );
    this.pods = new ResilientInformer(kc, { resource: 'pods', path: '/api/v1/pods', list: (page) => core.listPodForAllNamespaces(page), keep: podFields }, informerOpts);
    this.namespaces = new ResilientInformer(kc, { resource: 'namespaces', path: '/api/v1/namespaces', list: (page) => core.listNamespace(page), keep: namespaceFields }, informerOpts);
    this.trafficPolicies = new ResilientInformer(
      kc,
      {
        resource: TRAFFIC_POLICY_PLURAL,
        path: policyPath(TRAFFIC_POLICY_PLURAL),
        list: (page) => listOf<PolicyObject>(custom.listClusterCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, plural: TRAFFIC_POLICY_PLURAL, ...page })),
        optional: true,
      },
      informerOpts,
    );
    this.authorizationPolicies = new ResilientInformer(
      kc,
      {
        resource: AUTHORIZATION_POLICY_PLURAL,
        path: policyPath(AUTHORIZATION_POLICY_PLURAL),
        list: (page) => listOf<PolicyObject>(custom.listClusterCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, plural: AUTHORIZATION_POLICY_PLURAL, ...page })),
        optional: true,
      },
      informerOpts,
    );
    const routeInformer = (plural: string): ResilientInformer<RouteObject> =>
      new ResilientInformer(
        kc,
        {
          resource: plural,
          path: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/${plural}`,
          list: (page) => listOf<RouteObject>(custom.listClusterCustomObject({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, plural, ...page })),
          optional: true,
        },
        informerOpts,
      );
    this.httpRoutes = routeInformer(GATEWAY_API_PLURALS.httpRoute);
    this.grpcRoutes = routeInformer(GATEWAY_API_PLURALS.grpcRoute);
    const fieldSelector = `metadata.name=${MESH_CONFIG_NAME}`;
    this.meshConfigMap = new ResilientInformer(
      kc,
      {
        resource: 'configmaps',
        path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`,
        list: (page) => core.listNamespacedConfigMap({ namespace, fieldSelector, ...page }),
        fieldSelector,
      },
      informerOpts,
    );
    this.informers = [this.services, this.slices, this.pods, this.namespaces, this.trafficPolicies, this.authorizationPolicies, this.meshConfigMap, this.httpRoutes, this.grpcRoutes];
    if (opts.writeStatus !== false) {
      this.statusWriter = new PolicyStatusWriter({ kc, log: opts.log.child('status'), retry: () => this.schedule() });
      this.routeStatusWriter = new RouteStatusWriter({ kc, log: opts.log.child('status'), retry: () => this.schedule() });
      this.events = new EventRecorder(kc, opts.log.child('events'), opts.instance ?? hostname());
    }
    for (const i of this.informers) i.start();
    this.resyncTimer = setInterval(() => this.schedule(), opts.resyncMs ?? 300_000);
    this.resyncTimer.unref();
  }

  current(): MeshModel | undefined {
    return this.model;
  }

  onChange(listener: (model: MeshModel) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  synced(): Promise<MeshModel> {
    if (this.model) return Promise.resolve(this.model);
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  notReady(): string | undefined {
    if (this.model) return undefined;
    const waiting = this.informers.filter((i) => !i.synced).map((i) => i.resource);
    return waiting.length > 0 ? `discovery has not listed ${waiting.join(', ')} yet` : 'discovery is building its first model';
  }

  certificateTtlSeconds(): number | undefined {
    return this.meshConfig.certificateTtlSeconds;
  }

  onMeshConfig(listener: (config: MeshConfig) => void): () => void {
    this.meshConfigListeners.add(listener);
    return () => this.meshConfigListeners.delete(listener);
  }

  verdicts(): readonly Verdict[] {
    return this.lastVerdicts;
  }

  routeVerdicts(): readonly RouteVerdict[] {
    return this.lastRouteVerdicts;
  }

  /** Debounce: rebuild debounceMs after the last event, and at most maxDelayMs after the first of a burst. */
  private schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.timer === undefined) this.burstStart = now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.burstStart + this.maxDelayMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.rebuild();
    }, wait);
  }

  private rebuild(): void {
    if (this.closed || this.informers.some((i) => !i.synced)) return;
    try {
      this.rebuildNow();
    } catch (e) {
      // Mapping is pure and checked; reaching this is a bug. Keep the last model and say so.
      this.log.error('building the mesh model failed; keeping the last one', { error: (e as Error).stack ?? String(e) });
    }
  }

  private rebuildNow(): void {
    const { trustDomain } = this.opts;
    // Mesh-wide settings: parsed when the ConfigMap changes; a bad one keeps the last good settings.
    const cm = this.meshConfigMap.list()[0];
    const cmVersion = cm?.metadata?.resourceVersion;
    if (cmVersion !== this.meshConfigVersion) {
      this.meshConfigVersion = cmVersion;
      const settings = (c: MeshConfig) => ({
        mtlsMode: c.mesh.mtlsMode,
        retryBudget: c.mesh.retryBudget,
        ...(c.certificateTtlSeconds ? { certificateTtlSeconds: c.certificateTtlSeconds } : {}),
      });
      let next: MeshConfig | undefined;
      try {
        next = parseMeshConfigMap(cm, trustDomain);
      } catch (e) {
        // The error names the key and its value (data.<key>: ...); `keeping` is what stays in force.
        this.log.error(`ConfigMap ${MESH_CONFIG_NAME} is invalid; keeping the last good mesh settings`, { error: (e as Error).message, keeping: settings(this.meshConfig) });
        // And where its author looks (kubectl describe configmap): one Event per refused version, from the writer.
        const meta = cm?.metadata;
        if (meta?.namespace && meta.name && this.writes()) {
          const target = { apiVersion: 'v1', kind: 'ConfigMap', namespace: meta.namespace, name: meta.name, uid: meta.uid, resourceVersion: meta.resourceVersion };
          this.events?.warning(target, INVALID_CONFIG, `${(e as Error).message}; the last good mesh settings stay in force`);
        }
      }
      if (next) {
        this.meshConfig = next;
        this.log.info(cm ? `mesh settings from ConfigMap ${MESH_CONFIG_NAME}` : `no ConfigMap ${MESH_CONFIG_NAME}; default mesh settings`, settings(next));
        for (const l of this.meshConfigListeners) {
          try {
            l(next);
          } catch (e) {
            this.log.error('a mesh settings listener failed', { error: (e as Error).message });
          }
        }
      }
    }

    const podOf = (namespace: string, name: string): PodFields | undefined => this.pods.get(name, namespace);
    const { model, verdicts, accepted, skipped, settingsProblems, lastGoodSettings, routeVerdicts, acceptedRoutes } = meshModelFromObjects(
      {
        services: this.services.list(),
        endpointSlices: this.slices.list(),
        podOf,
        trafficPolicies: this.trafficPolicies.list(),
        authorizationPolicies: this.authorizationPolicies.list(),
        namespaces: this.namespaces.list(),
        pods: this.pods.list(),
        httpRoutes: this.httpRoutes.list(),
        grpcRoutes: this.grpcRoutes.list(),
      },
      this.meshConfig.mesh,
      trustDomain,
      this.accepted,
      this.lastGoodSettings,
      this.acceptedRoutes,
    );
    this.acceptedRoutes = acceptedRoutes;
    this.lastRouteVerdicts = routeVerdicts;
    const { services } = model;
    if (skipped.length > 0) this.log.debug('endpoints left out', { count: skipped.length, first: skipped.slice(0, 5) });
    this.accepted = accepted;
    this.lastGoodSettings = lastGoodSettings;
    const problems = new Set(settingsProblems.map((p) => JSON.stringify(p)));
    for (const p of settingsProblems) {
      if (!this.settingsProblems.has(JSON.stringify(p))) this.log.warn(`${p.kind} ${p.kind === 'Namespace' ? p.name : `${p.namespace}/${p.name}`}: ${p.message}`);
    }
    this.settingsProblems = problems;
    this.lastVerdicts = verdicts;

    const json = JSON.stringify(model);
    if (json !== this.modelJson) {
      const first = this.model === undefined;
      this.model = model;
      this.modelJson = json;
      this.log.info(first ? 'first mesh model' : 'mesh model changed', {
        services: services.length,
        endpoints: services.reduce((n, s) => n + s.endpoints.length, 0),
        trafficPolicies: model.trafficPolicies.length,
        authorizationPolicies: model.authorizationPolicies.length,
        gatewayRoutes: model.gatewayRoutes?.length ?? 0,
      });
      for (const l of this.listeners) {
        try {
          l(model);
        } catch (e) {
          this.log.error('a mesh model listener failed', { error: (e as Error).message });
        }
      }
      if (first) for (const w of this.syncWaiters.splice(0)) w(model);
    }

    if (!this.writes()) return;
    this.statusWriter?.sync(verdicts, (v) =>
      (v.kind === 'TrafficPolicy' ? this.trafficPolicies : this.authorizationPolicies).get(v.name, v.namespace),
    );
    this.routeStatusWriter?.sync(routeVerdicts, (v) => (v.kind === 'HTTPRoute' ? this.httpRoutes : this.grpcRoutes).get(v.name, v.namespace));
  }

  /** Whether this replica writes to the API now. */
  private writes(): boolean {
    return !this.opts.isWriter || this.opts.isWriter();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.resyncTimer);
    this.statusWriter?.close();
    this.routeStatusWriter?.close();
    for (const i of this.informers) i.stop();
    this.listeners.clear();
    this.meshConfigListeners.clear();
  }
}
