// The injection core, shared by the webhook and `tsmesh inject`: a pod (plus
// its namespace and the mesh config) in, a JSON patch out. Pure: no I/O, no
// clock, no randomness, so the golden files in testdata/ pin it down.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { PROXY_DEFAULTS } from '../contract/env.js';
import { InjectionRefused } from './errors.js';
import { TSMESH_VERSION, type MeshConfig } from './mesh-config.js';
import { INIT_CONTAINER, PROMETHEUS_ANNOTATIONS, PROXY_CONTAINER, STATUS_ANNOTATION, VOLUMES } from '../contract/names.js';
import { readOverrides } from './overrides.js';
import { rewriteProbes } from './probes.js';
import { proxyUidWarnings } from './proxy-uid.js';
import { initContainer, meshVolumes, proxyContainer } from './sidecar.js';
import { skipReason, type NamespaceInfo, type Skip } from './skip.js';

/** RFC 6902 operations, as far as injection writes them. */
export type PatchOperation = { op: 'add' | 'replace'; path: string; value: unknown } | { op: 'remove'; path: string };

export type PatchResult =
  | { readonly kind: 'injected'; readonly patch: PatchOperation[]; readonly warnings: string[] }
  | { readonly kind: 'skipped'; readonly skip: Skip };

/** The value of the tsmesh.io/status annotation. */
export interface InjectionStatus {
  version: string;
  containers: string[];
  volumes: string[];
}

/** Ports the proxy listens on in the pod's network namespace; an app container may not declare them. */
const PROXY_PORTS = [PROXY_DEFAULTS.OUTBOUND_PORT, PROXY_DEFAULTS.INBOUND_PORT, PROXY_DEFAULTS.ADMIN_PORT];

/** RFC 6901: "~" and "/" inside a key. */
export function pointerSegment(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function invalid(message: string): never {
  throw new InjectionRefused('invalid-pod', message);
}

/** Checks the parts of the pod injection reads; the API server validates the rest after mutation. */
export function asPod(object: unknown): V1Pod {
  if (!isObject(object)) invalid('the object is not a pod: expected a JSON object');
  const { metadata, spec } = object;
  if (metadata !== undefined && !isObject(metadata)) invalid('metadata must be an object');
  for (const field of ['annotations', 'labels'] as const) {
    const map = metadata?.[field];
    if (map === undefined || map === null) continue;
    if (!isObject(map)) invalid(`metadata.${field} must be a map of strings`);
    for (const [key, value] of Object.entries(map)) {
      if (typeof value !== 'string')
        invalid(`metadata.${field} ${key}: ${JSON.stringify(value)} is not a string; ${field} values are strings, so quote it (${JSON.stringify(String(value))})`);
    }
  }
  if (!isObject(spec)) invalid('the pod has no spec; expected spec.containers');
  for (const field of ['containers', 'initContainers'] as const) {
    const list = spec[field];
    if ((list === undefined || list === null) && field === 'initContainers') continue;
    if (!Array.isArray(list) || (field === 'containers' && list.length === 0)) invalid(`spec.${field} must be a list of containers`);
    for (const c of list as unknown[]) if (!isObject(c) || typeof c['name'] !== 'string') invalid(`every entry of spec.${field} needs a name`);
  }
  const volumes = spec['volumes'];
  if (volumes !== undefined && volumes !== null && !Array.isArray(volumes)) invalid('spec.volumes must be a list');
  return object as V1Pod;
}

function checkNoClash(pod: V1Pod): void {
  const spec = pod.spec!;
  const containers: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of containers) {
    if (c.name === INIT_CONTAINER || c.name === PROXY_CONTAINER)
      invalid(`container name ${c.name} is reserved for the mesh, but the pod has no ${STATUS_ANNOTATION} annotation; rename the container`);
    for (const p of c.ports ?? []) {
      if (PROXY_PORTS.includes(p.containerPort as (typeof PROXY_PORTS)[number]))
        throw new InjectionRefused(
          'port-conflict',
          `container ${c.name} declares port ${p.containerPort}, which the tsmesh proxy uses (${PROXY_PORTS.join(', ')}); ` +
            `move the app to another port, or opt the pod out with annotation tsmesh.io/inject: disabled`,
        );
    }
  }
  const ours: string[] = Object.values(VOLUMES);
  for (const v of spec.volumes ?? []) {
    if (ours.includes(v.name)) invalid(`volume name ${v.name} is reserved for the mesh; rename the volume`);
  }
}

/**
 * The patch that meshes `object`, or why it is left alone. Throws
 * InjectionRefused when the pod must not be created as it is (a bad override,
 * a port the proxy needs, a name the mesh reserves, a container running as
 * the proxy's uid or gid).
 */
export function buildPodPatch(object: unknown, namespace: NamespaceInfo, mesh: MeshConfig, version: string = TSMESH_VERSION): PatchResult {
  const pod = asPod(object);
  const skip = skipReason(pod, namespace);
  if (skip) return { kind: 'skipped', skip };
  checkNoClash(pod);
  const uidWarnings = proxyUidWarnings(pod);

  const annotations = pod.metadata?.annotations ?? {};
  const overrides = readOverrides(annotations, mesh);
  const probes = rewriteProbes(pod.spec!.containers);
  const sidecars = [initContainer(mesh, overrides), proxyContainer(mesh, overrides, probes.appProbes)];
  const volumes = meshVolumes();
  const patch: PatchOperation[] = [];

  // Both mesh containers go first, so the redirects and the proxy are in place before any user init container runs.
  if ((pod.spec!.initContainers ?? []).length === 0) patch.push({ op: 'add', path: '/spec/initContainers', value: sidecars });
  else sidecars.forEach((value, i) => patch.push({ op: 'add', path: `/spec/initContainers/${i}`, value }));

  if (pod.spec!.volumes === undefined || pod.spec!.volumes === null) patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  else for (const value of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value });

  for (const r of probes.rewritten) {
    patch.push({ op: 'replace', path: `/spec/containers/${r.containerIndex}/${r.field}`, value: r.probe });
  }

  const status: InjectionStatus = { version, containers: sidecars.map((c) => c.name), volumes: volumes.map((v) => v.name) };
  const added: Record<string, string> = { [STATUS_ANNOTATION]: JSON.stringify(status) };
  // The pod's own scrape settings win: it may already export metrics of its own.
  if (!Object.values(PROMETHEUS_ANNOTATIONS).some((key) => key in annotations)) {
    added[PROMETHEUS_ANNOTATIONS.scrape] = 'true';
    added[PROMETHEUS_ANNOTATIONS.port] = String(PROXY_DEFAULTS.ADMIN_PORT);
    added[PROMETHEUS_ANNOTATIONS.path] = '/metrics';
  }
  if (pod.metadata === undefined) patch.push({ op: 'add', path: '/metadata', value: { annotations: added } });
  else if (pod.metadata.annotations === undefined || pod.metadata.annotations === null) patch.push({ op: 'add', path: '/metadata/annotations', value: added });
  else for (const [key, value] of Object.entries(added)) patch.push({ op: 'add', path: `/metadata/annotations/${pointerSegment(key)}`, value });

  return { kind: 'injected', patch, warnings: [...probes.warnings, ...uidWarnings] };
}
