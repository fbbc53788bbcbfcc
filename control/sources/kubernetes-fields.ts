// What the control plane reads of the kinds that grow with the cluster
// (Pods, Services, EndpointSlices, Namespaces), as types and as the
// functions that keep only that of an object. The informers apply them to
// every listed and watched object before it is cached (as client-go's
// informer TransformFunc does), so the caches hold no managedFields, no
// last-applied annotation, no container specs, no status beyond a pod's
// phase: at scale, the caches of whole objects were most of the control
// plane's memory.
//
// The readers (kubernetes-services.ts, kubernetes-settings.ts,
// kubernetes-model.ts) take these types, not the client's V1 ones, so a
// reader that starts reading a field left out here does not compile until
// the field is added to its type and to its function below; the golden
// mapping is also run on kept objects against whole ones
// (kubernetes-fields.test.ts).
//
// Not applied to the tsmesh.io policies, the Gateway API routes and
// ConfigMap tsmesh-config: they are few, their specs are checked field by
// field (an unknown field is a verdict), and their status is written back
// from the cached object.
import type { V1Container, V1EndpointSlice, V1Namespace, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus, V1Service, V1ServicePort, V1ServiceSpec } from '@kubernetes/client-node';
import { INIT_CONTAINER, SERVICE_NAME_LABEL } from '../../contract/names.js';

/** Annotations the control plane reads (tsmesh.io/status, the settings of contract/annotations.ts) all have this prefix. */
const ANNOTATION_PREFIX = 'tsmesh.io/';

/** What the cache itself needs: ListWatch keys objects by namespace and name, and compares resourceVersions. */
type Meta = Pick<V1ObjectMeta, 'name' | 'namespace' | 'uid' | 'resourceVersion'>;

type PodInitContainer = Pick<V1Container, 'name' | 'args'>;

export interface PodFields {
  metadata?: Meta & Pick<V1ObjectMeta, 'annotations'>;
  spec?: Pick<V1PodSpec, 'serviceAccountName'> & { initContainers?: PodInitContainer[] };
  status?: Pick<V1PodStatus, 'phase'>;
}

export interface ServiceFields {
  metadata?: Meta;
  spec?: Pick<V1ServiceSpec, 'type' | 'clusterIP' | 'clusterIPs' | 'ipFamilies'> & { ports?: Pick<V1ServicePort, 'name' | 'port' | 'protocol' | 'targetPort' | 'appProtocol'>[] };
}

export interface EndpointSliceFields {
  metadata?: Meta & Pick<V1ObjectMeta, 'labels'>;
  addressType: V1EndpointSlice['addressType'];
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean };
    targetRef?: { kind?: string; namespace?: string; name?: string; uid?: string };
  }[];
  ports?: { name?: string; port?: number; protocol?: string }[];
}

export interface NamespaceFields {
  metadata?: Meta & Pick<V1ObjectMeta, 'annotations'>;
}

/**
 * Values that repeat across objects (a namespace, a ServiceAccount, the
 * injector's annotation and tsmesh-init's arguments, alike on every pod it
 * injected) are kept once: each parsed object brings its own copy of every
 * string. The table is emptied when it reaches SHARED_MAX entries, so values
 * that stop repeating (deleted namespaces, older injector versions) do not
 * stay for good. Shared objects and arrays are frozen: no reader writes to a
 * cached object, and one that did would otherwise change every pod's.
 */
const SHARED_MAX = 50_000;
let shared = new Map<string, unknown>();

function share<T>(key: string, make: () => T): T {
  const found = shared.get(key);
  if (found !== undefined) return found as T;
  if (shared.size >= SHARED_MAX) shared = new Map();
  const value = make();
  shared.set(key, value);
  return value;
}

/** One copy of a string that repeats; undefined stays undefined. */
function intern<S extends string | undefined>(s: S): S {
  return s === undefined ? s : share(`s\0${s}`, () => s);
}

function meta(m: V1ObjectMeta | undefined): Meta {
  const out: Meta = {};
  if (m?.name !== undefined) out.name = m.name;
  if (m?.namespace !== undefined) out.namespace = intern(m.namespace);
  if (m?.uid !== undefined) out.uid = m.uid;
  if (m?.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  return out;
}

/** The tsmesh.io/ annotations, one shared frozen object per distinct set; undefined when there are none. */
function meshAnnotations(annotations: Record<string, string> | undefined): Record<string, string> | undefined {
  const kept = Object.entries(annotations ?? {}).filter(([k]) => k.startsWith(ANNOTATION_PREFIX));
  if (kept.length === 0) return undefined;
  return share(`a\0${JSON.stringify(kept)}`, () => Object.freeze(Object.fromEntries(kept)) as Record<string, string>);
}

/** T with its properties that may be undefined made optional instead. */
type Defined<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & { [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined> };

/** Undefined-valued properties left out (exactOptionalPropertyTypes; and an absent field costs nothing). */
function defined<T extends object>(o: T): Defined<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Defined<T>;
}

/** metadata (with the tsmesh.io/ annotations), the ServiceAccount, tsmesh-init's arguments, the phase. */
export function podFields(pod: V1Pod): PodFields {
  const init = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER);
  return defined({
    metadata: defined({ ...meta(pod.metadata), annotations: meshAnnotations(pod.metadata?.annotations) }),
    spec: defined({
      serviceAccountName: intern(pod.spec?.serviceAccountName),
      initContainers: init
        ? share(`i\0${JSON.stringify(init.args ?? null)}`, () => Object.freeze([Object.freeze(defined({ name: init.name, args: init.args ? Object.freeze([...init.args]) : undefined }))]) as PodInitContainer[])
        : undefined,
    }),
    status: pod.status?.phase !== undefined ? { phase: intern(pod.status.phase) } : undefined,
  });
}

/** metadata, the type, cluster IPs and families, the ports. */
export function serviceFields(svc: V1Service): ServiceFields {
  const s = svc.spec;
  return defined({
    metadata: meta(svc.metadata),
    spec: s
      ? defined({
          type: s.type,
          clusterIP: s.clusterIP,
          clusterIPs: s.clusterIPs,
          ipFamilies: s.ipFamilies,
          ports: s.ports?.map((p) => defined({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort, appProtocol: p.appProtocol })),
        })
      : undefined,
  });
}

/** metadata with the kubernetes.io/service-name label, the address type, each endpoint's addresses, readiness and targetRef, the ports. */
export function endpointSliceFields(slice: V1EndpointSlice): EndpointSliceFields {
  const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return defined({
    metadata: defined({ ...meta(slice.metadata), labels: service !== undefined ? { [SERVICE_NAME_LABEL]: service } : undefined }),
    addressType: intern(slice.addressType),
    endpoints: slice.endpoints?.map((e) => {
      const ref = e.targetRef;
      return defined({
        addresses: e.addresses,
        conditions: e.conditions?.ready !== undefined ? { ready: e.conditions.ready } : undefined,
        targetRef: ref ? defined({ kind: intern(ref.kind), namespace: intern(ref.namespace), name: ref.name, uid: ref.uid }) : undefined,
      });
    }),
    ports: slice.ports?.map((p) => defined({ name: p.name, port: p.port, protocol: p.protocol })),
  });
}

/** metadata with the tsmesh.io/ annotations. */
export function namespaceFields(ns: V1Namespace): NamespaceFields {
  return { metadata: defined({ ...meta(ns.metadata), annotations: meshAnnotations(ns.metadata?.annotations) }) };
}
