// `tsmesh inject`'s core: YAML manifests in, the same manifests with every pod
// template meshed out. The patch comes from buildPodPatch, the one the webhook
// sends, applied here to the template instead of by the API server.
import jsonpatch from 'fast-json-patch';
import { parseAllDocuments, stringify } from 'yaml';
import { InjectionRefused } from './errors.js';
import { TSMESH_VERSION, type MeshConfig } from './mesh-config.js';
import { buildPodPatch, type PatchOperation } from './patch.js';

/** Where each kind keeps its pod template (metadata + spec, the shape of a pod). */
const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export const INJECTABLE_KINDS: readonly string[] = Object.keys(TEMPLATE_PATHS);

export interface ManifestReport {
  /** "deployment/web" */
  readonly resource: string;
  readonly outcome: 'injected' | 'skipped';
  /** The skip reason, or the warnings of an injection. */
  readonly message?: string;
}

export interface InjectedManifests {
  readonly output: string;
  readonly reports: readonly ManifestReport[];
}

export interface ManifestOptions {
  /** For objects without metadata.namespace (default "default"). */
  readonly namespace?: string;
  readonly version?: string;
  /** Shown in errors, e.g. the file name. */
  readonly source?: string;
}

/** A manifest that cannot be injected; the message names the document and resource. */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The pod template of an object (the object itself for a Pod); undefined for kinds without one. */
export function podTemplateOf(object: Obj): Obj | undefined {
  const path = typeof object['kind'] === 'string' ? TEMPLATE_PATHS[object['kind']] : undefined;
  if (path === undefined) return undefined;
  let node: unknown = object;
  for (const key of path) node = isObject(node) ? node[key] : undefined;
  return isObject(node) ? node : undefined;
}

function resourceName(object: Obj): string {
  const metadata = isObject(object['metadata']) ? object['metadata'] : {};
  const name = typeof metadata['name'] === 'string' ? metadata['name'] : typeof metadata['generateName'] === 'string' ? `${metadata['generateName']}*` : '<unnamed>';
  return `${String(object['kind']).toLowerCase()}/${name}`;
}

/** Injects one object in place (items of a List too); returns what happened to each workload. */
function injectObject(object: Obj, mesh: MeshConfig, opts: ManifestOptions, where: string): ManifestReport[] {
  if (object['kind'] === 'List' && Array.isArray(object['items'])) {
    return object['items'].flatMap((item: unknown, i) => (isObject(item) ? injectObject(item, mesh, opts, `${where}, item ${i}`) : []));
  }
  if (typeof object['kind'] !== 'string' || !(object['kind'] in TEMPLATE_PATHS)) return [];
  const resource = resourceName(object);
  const template = podTemplateOf(object);
  if (template === undefined) throw new ManifestError(`${where} (${resource}): has no pod template at ${TEMPLATE_PATHS[object['kind']]!.join('.')}`);
  const metadata = isObject(object['metadata']) ? object['metadata'] : {};
  const namespace = typeof metadata['namespace'] === 'string' ? metadata['namespace'] : (opts.namespace ?? 'default');
  let result;
  try {
    result = buildPodPatch(template, { name: namespace }, mesh, opts.version ?? TSMESH_VERSION);
  } catch (e) {
    if (e instanceof InjectionRefused) throw new ManifestError(`${where} (${resource}): ${e.message}`);
    throw e;
  }
  if (result.kind === 'skipped') return [{ resource, outcome: 'skipped', message: result.skip.message }];
  applyPodPatch(template, result.patch);
  return [{ resource, outcome: 'injected', ...(result.warnings.length > 0 ? { message: result.warnings.join('; ') } : {}) }];
}

/** Applies a patch from buildPodPatch to a pod (or pod template) in place. */
export function applyPodPatch(pod: Obj, patch: readonly PatchOperation[]): void {
  jsonpatch.applyPatch(pod, patch as jsonpatch.Operation[], true, true);
}

/** Injects every workload in a YAML stream; other documents pass through as they were written. */
export function injectManifests(text: string, mesh: MeshConfig, opts: ManifestOptions = {}): InjectedManifests {
  const source = opts.source ?? 'input';
  // YAML 1.1, as kubectl reads manifests: an unquoted `on` is a boolean there, and stays one here.
  const docs = parseAllDocuments(text, { prettyErrors: true, version: '1.1' });
  if (!Array.isArray(docs)) throw new ManifestError(`${source}: not a YAML stream`);
  const reports: ManifestReport[] = [];
  const out: string[] = [];
  docs.forEach((doc, i) => {
    const where = `${source}: document ${i + 1}`;
    if (doc.errors.length > 0) throw new ManifestError(`${where}: ${doc.errors[0]!.message}`);
    const object: unknown = doc.toJS();
    const found = isObject(object) ? injectObject(object, mesh, opts, where) : [];
    reports.push(...found);
    if (found.some((r) => r.outcome === 'injected')) out.push(stringify(object, { lineWidth: 0, version: '1.1' }));
    else if (object !== null && object !== undefined) {
      // Written as it came, comments kept; the separators are ours to write.
      if (doc.directives) doc.directives.docStart = null;
      out.push(doc.toString({ lineWidth: 0 }));
    }
  });
  return { output: out.join('---\n'), reports };
}

/** Injected YAML documents as JSON, as kubectl -o json prints them: the object when there is one, else a v1 List of them. */
export function manifestsAsJson(yaml: string): unknown {
  const objects = parseAllDocuments(yaml, { version: '1.1' })
    .map((d) => d.toJS() as unknown)
    .filter((o) => o !== null && o !== undefined);
  return objects.length === 1 ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
}
