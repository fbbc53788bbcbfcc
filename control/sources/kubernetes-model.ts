// Pure: the Kubernetes objects the source caches -> one MeshModel and the
// verdicts on its policies. kubernetes.ts calls it on every rebuild with its
// informers' contents; the golden tests (testdata/mapping/) call it with the
// objects of a YAML file. The per-object mapping is in kubernetes-services.ts
// and kubernetes-policies.ts; the mesh settings (ConfigMap tsmesh-config,
// kubernetes-mesh-config.ts, whose last good value is state) are an input
// here; what namespaces and workloads set over them comes from their
// annotations (kubernetes-settings.ts); Gateway API routes are mapped by
// kubernetes-routes.ts.
import { SERVICE_NAME_LABEL } from '../../contract/names.js';
import type { MeshModel, ServiceModel } from '../model.js';
import type { EndpointSliceFields, NamespaceFields, PodFields, ServiceFields } from './kubernetes-fields.js';
import { evaluatePolicies, type AcceptedPolicies, type PolicyObject, type Verdict } from './kubernetes-policies.js';
import { serviceModel, type PodLookup, type SkippedEndpoint } from './kubernetes-services.js';
import { emptyLastGood, settingsFromObjects, type LastGoodSettings, type SettingsProblem } from './kubernetes-settings.js';
import { evaluateRoutes, type AcceptedRoutes, type RouteObject, type RouteVerdict } from './kubernetes-routes.js';

export interface KubernetesObjects {
  services: readonly ServiceFields[];
  endpointSlices: readonly EndpointSliceFields[];
  /** The pods the slices' targetRefs name, looked up by namespace and name. */
  podOf: PodLookup;
  trafficPolicies: readonly PolicyObject[];
  authorizationPolicies: readonly PolicyObject[];
  /** For their annotations (the namespaces' and the workloads' settings); none: no settings over the mesh's. */
  namespaces?: readonly NamespaceFields[];
  pods?: readonly PodFields[];
  /** Gateway API routes (kubernetes-routes.ts); none: no routes. */
  httpRoutes?: readonly RouteObject[];
  grpcRoutes?: readonly RouteObject[];
}

export interface MeshModelResult {
  model: MeshModel;
  verdicts: Verdict[];
  /** The accepted specs to pass in next time (see evaluatePolicies). */
  accepted: AcceptedPolicies;
  /** Slice endpoints left out of the model, and why. */
  skipped: SkippedEndpoint[];
  /** Annotations that could not be read, and workloads whose pods disagree. */
  settingsProblems: SettingsProblem[];
  /** The last readable settings of each namespace and pod, to pass in next time. */
  lastGoodSettings: LastGoodSettings;
  /** The verdict on each Gateway API route's Service parentRefs (route-status.ts writes them). */
  routeVerdicts: RouteVerdict[];
  /** The last accepted model of each route, to pass in next time. */
  acceptedRoutes: AcceptedRoutes;
}

/** What a Service's model was made from, and the model. */
interface Made {
  slices: readonly EndpointSliceFields[];
  /** The pod each endpoint's targetRef named, in slice and endpoint order (undefined: none, or not cached). */
  pods: (PodFields | undefined)[];
  trustDomain: string;
  model: ServiceModel | undefined;
  skipped: SkippedEndpoint[];
}

/**
 * The last model of each Service object. The informers replace an object when
 * it changes and never modify one, so a Service whose object, slices and the
 * pods they point at are the same objects as last time has the same model:
 * it is not mapped again, and successive mesh models share it (one endpoint
 * change maps one Service, not every Service of the cluster).
 */
const made = new WeakMap<ServiceFields, Made>();

function podsOf(slices: readonly EndpointSliceFields[], namespace: string | undefined, podOf: PodLookup): (PodFields | undefined)[] {
  const pods: (PodFields | undefined)[] = [];
  for (const slice of slices) {
    for (const ep of slice.endpoints ?? []) {
      const ref = ep.targetRef;
      pods.push(ref?.kind === 'Pod' && ref.name ? podOf(ref.namespace ?? namespace ?? '', ref.name) : undefined);
    }
  }
  return pods;
}

const sameItems = <T>(a: readonly T[], b: readonly T[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function memoServiceModel(svc: ServiceFields, slices: readonly EndpointSliceFields[], podOf: PodLookup, trustDomain: string, skipped: SkippedEndpoint[]): ServiceModel | undefined {
  const pods = podsOf(slices, svc.metadata?.namespace, podOf);
  const last = made.get(svc);
  if (last && last.trustDomain === trustDomain && sameItems(last.slices, slices) && sameItems(last.pods, pods)) {
    skipped.push(...last.skipped);
    return last.model;
  }
  const own: SkippedEndpoint[] = [];
  const model = serviceModel(svc, slices, podOf, trustDomain, own);
  made.set(svc, { slices, pods, trustDomain, model, skipped: own });
  skipped.push(...own);
  return model;
}

/**
 * Services (each with the EndpointSlices labelled with its name in its
 * namespace, and their pods) -> ServiceModels sorted by namespace/name; the
 * policies evaluated against those Services (`accepted`: the last accepted
 * spec of each policy, not modified); `mesh` as given.
 */
export function meshModelFromObjects(
  objects: KubernetesObjects,
  mesh: MeshModel['mesh'],
  trustDomain: string,
  accepted: AcceptedPolicies,
  lastGoodSettings: LastGoodSettings = emptyLastGood(),
  acceptedRoutes: AcceptedRoutes = new Map(),
): MeshModelResult {
  const slicesByService = new Map<string, EndpointSliceFields[]>();
  for (const s of objects.endpointSlices) {
    const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${s.metadata?.namespace}/${svc}`;
    const list = slicesByService.get(key);
    if (list) list.push(s);
    else slicesByService.set(key, [s]);
  }
  const skipped: SkippedEndpoint[] = [];
  const services: ServiceModel[] = [];
  for (const svc of objects.services) {
    const key = `${svc.metadata?.namespace}/${svc.metadata?.name}`;
    const m = memoServiceModel(svc, slicesByService.get(key) ?? [], objects.podOf, trustDomain, skipped);
    if (m) services.push(m);
  }
  services.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));

  const policies = evaluatePolicies({
    trafficPolicies: objects.trafficPolicies,
    authorizationPolicies: objects.authorizationPolicies,
    services: new Set(services.map((s) => `${s.namespace}/${s.name}`)),
    accepted,
  });
  const settings = settingsFromObjects(objects.namespaces ?? [], objects.pods ?? [], mesh, lastGoodSettings);
  const routes = evaluateRoutes({ httpRoutes: objects.httpRoutes ?? [], grpcRoutes: objects.grpcRoutes ?? [], services, accepted: acceptedRoutes });
  // A TrafficPolicy's routes give way on the ports where Gateway API routes attach: say so in its status.
  const verdicts = policies.verdicts.map((v) => {
    const policy = policies.trafficPolicies.find((p) => v.kind === 'TrafficPolicy' && v.accepted && p.namespace === v.namespace && p.name === v.name);
    if (!policy?.spec.routes?.length) return v;
    const svc = services.find((s) => s.namespace === policy.namespace && s.name === policy.targetService);
    const ports = (svc?.ports ?? [])
      .filter((sp) => routes.routes.some((r) => r.namespace === policy.namespace && r.parents.some((p) => p.namespace === policy.namespace && p.service === policy.targetService && (p.port === undefined || p.port === sp.port))))
      .map((sp) => sp.port);
    return ports.length === 0 ? v : { ...v, message: `${v.message}; on port${ports.length > 1 ? 's' : ''} ${ports.join(', ')} Gateway API routes replace its routes (its timeout, retries, circuit breaker, limits and faults still apply)` };
  });
  return {
    model: {
      mesh,
      services,
      trafficPolicies: policies.trafficPolicies,
      authorizationPolicies: policies.authorizationPolicies,
      ...(settings.namespaceSettings.length > 0 ? { namespaceSettings: settings.namespaceSettings } : {}),
      ...(settings.workloadSettings.length > 0 ? { workloadSettings: settings.workloadSettings } : {}),
      ...(routes.routes.length > 0 ? { gatewayRoutes: routes.routes } : {}),
    },
    verdicts,
    accepted: policies.accepted,
    skipped,
    settingsProblems: settings.problems,
    lastGoodSettings: settings.lastGood,
    routeVerdicts: routes.verdicts,
    acceptedRoutes: routes.accepted,
  };
}
