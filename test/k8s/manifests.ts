// The YAML in manifests/, read the way kubectl reads it, and applied to a real
// API server the way `kubectl apply --server-side` applies it: a
// server-side-apply PATCH with fieldValidation=Strict (kubectl's default
// --validate=strict), optionally with dryRun=All (`--dry-run=server`). The
// request goes through the REST API directly so that the API server's
// warnings (for example Pod Security warnings on a Deployment) are kept.

import { readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
export const manifestsDir = resolve(here, '..', '..', 'manifests');

/** The field manager tsmesh's own applies use. */
export const FIELD_MANAGER = 'tsmesh';

export interface ManifestObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export interface ManifestDoc {
  /** File name inside manifests/. */
  file: string;
  /** Position of the document in its file, from 0 (empty documents are not counted). */
  index: number;
  object: ManifestObject;
}

/** `file#index Kind namespace/name`, for test titles and messages. */
export function describeDoc(d: ManifestDoc): string {
  const m = d.object.metadata;
  return `${d.file}#${d.index} ${d.object.kind} ${m.namespace ? `${m.namespace}/` : ''}${m.name}`;
}

/**
 * Parses a multi-document YAML text. `version: '1.1'` reads it as kubectl
 * does (sigs.k8s.io/yaml is YAML 1.1: `0440` is octal, `yes` is true).
 */
export function parseDocuments(text: string, file: string, version: '1.1' | '1.2' = '1.1'): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text, { version })) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

/** Checks the fields every object needs and says which one is missing. */
export function asManifestObject(value: unknown, where: string): ManifestObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: a document must be a mapping (an object), got ${JSON.stringify(value)}`);
  const o = value as Record<string, unknown>;
  if (typeof o['apiVersion'] !== 'string' || o['apiVersion'] === '') throw new Error(`${where}: apiVersion is missing`);
  if (typeof o['kind'] !== 'string' || o['kind'] === '') throw new Error(`${where}: kind is missing`);
  const md = o['metadata'] as Record<string, unknown> | undefined;
  if (typeof md?.['name'] !== 'string' || md['name'] === '') throw new Error(`${where}: metadata.name is missing (generateName cannot be applied)`);
  return value as ManifestObject;
}

/** Every document of every *.yaml / *.yml file in dir (default manifests/), files in name order; kustomization.yaml is kustomize's, not an object. */
export function readManifests(dir = manifestsDir): ManifestDoc[] {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
    .sort();
  return files.flatMap((file) =>
    parseDocuments(readFileSync(join(dir, file), 'utf8'), file).map((v, index) => ({ file, index, object: asManifestObject(v, `${file}#${index}`) })),
  );
}

const FIRST: Record<string, number> = { Namespace: 0, CustomResourceDefinition: 1 };

/**
 * The order to apply documents in: Namespaces, then CustomResourceDefinitions
 * (objects in a namespace or of a custom kind need them to exist), then
 * everything else in file and document order.
 */
export function applyOrder(docs: readonly ManifestDoc[]): ManifestDoc[] {
  const rank = (d: ManifestDoc): number => FIRST[d.object.kind] ?? 2;
  return docs
    .map((d, i) => ({ d, i }))
    .sort((a, b) => rank(a.d) - rank(b.d) || a.i - b.i)
    .map(({ d }) => d);
}

/** group and version of an apiVersion (`v1` is the core group ''). */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** An API answer that was not a success, with the Status message the server gave. */
export class ApiRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

export interface ApiResponse {
  status: number;
  body: unknown;
  /** Texts of the `Warning: 299 - "..."` headers. */
  warnings: string[];
}

function parseWarnings(header: string | string[] | undefined): string[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const out: string[] = [];
  for (const m of text.matchAll(/\d{3} \S+ "((?:[^"\\]|\\.)*)"/g)) out.push(m[1]!.replace(/\\(.)/g, '$1'));
  return out;
}

/** One request to the API server with kc's credentials. Non-2xx answers throw ApiRequestError. */
export async function kubeRequest(kc: KubeConfig, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(path, cluster.server);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const opts: Parameters<typeof request>[1] = {
    method,
    headers: { accept: 'application/json', ...(payload ? { 'content-type': contentType, 'content-length': String(payload.length) } : {}) },
  };
  await kc.applyToHTTPSOptions(opts);
  return new Promise<ApiResponse>((resolvePromise, reject) => {
    const req = request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        const status = res.statusCode ?? 0;
        const warnings = parseWarnings(res.headers['warning']);
        if (status >= 200 && status < 300) {
          resolvePromise({ status, body: parsed, warnings });
          return;
        }
        const st = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { message?: string; reason?: string };
        reject(new ApiRequestError(`${method} ${url.pathname}: ${status} ${st.message ?? text}`, status, st.reason ?? '', parsed));
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export interface ApiResource {
  /** Plural resource name, as in the URL. */
  name: string;
  namespaced: boolean;
  kind: string;
}

/** Asks API discovery which resource serves apiVersion/kind; undefined when none does. */
export async function resolveResource(kc: KubeConfig, apiVersion: string, kind: string): Promise<ApiResource | undefined> {
  const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  let res: ApiResponse;
  try {
    res = await kubeRequest(kc, 'GET', path);
  } catch (err) {
    if (err instanceof ApiRequestError && err.status === 404) return undefined;
    throw err;
  }
  const list = res.body as { resources?: ApiResource[] };
  return list.resources?.find((r) => r.kind === kind && !r.name.includes('/'));
}

/** The URL path of one object (namespace from the object; objects must carry it). */
export async function objectPath(kc: KubeConfig, obj: ManifestObject): Promise<string> {
  const resource = await resolveResource(kc, obj.apiVersion, obj.kind);
  if (!resource) throw new Error(`${obj.apiVersion} ${obj.kind} is not served by this API server; check apiVersion and kind, or install its CustomResourceDefinition first`);
  const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  const ns = obj.metadata.namespace;
  if (resource.namespaced && !ns) throw new Error(`${obj.kind} ${obj.metadata.name} is namespaced but has no metadata.namespace; set it so the object does not land in whatever namespace the user's context points at`);
  if (!resource.namespaced && ns) throw new Error(`${obj.kind} ${obj.metadata.name} is cluster-scoped; remove metadata.namespace`);
  return `${base}${resource.namespaced ? `/namespaces/${encodeURIComponent(ns!)}` : ''}/${resource.name}/${encodeURIComponent(obj.metadata.name)}`;
}

export interface ApplyOptions {
  /** dryRun=All: admission and validation run, nothing is stored. */
  dryRun?: boolean;
  fieldManager?: string;
}

/**
 * `kubectl apply --server-side [--dry-run=server]` for one object:
 * PATCH application/apply-patch+yaml with fieldValidation=Strict, so an
 * unknown or duplicated field is an error, not a silent drop.
 */
export async function serverSideApply(kc: KubeConfig, obj: ManifestObject, opts: ApplyOptions = {}): Promise<ApiResponse> {
  const query = new URLSearchParams({ fieldManager: opts.fieldManager ?? FIELD_MANAGER, fieldValidation: 'Strict' });
  if (opts.dryRun) query.set('dryRun', 'All');
  return kubeRequest(kc, 'PATCH', `${await objectPath(kc, obj)}?${query.toString()}`, obj, 'application/apply-patch+yaml');
}

/** A kubeconfig for the same API server as `admin`, authenticating with a bearer token. */
export function kubeConfigWithToken(admin: KubeConfig, token: string, user = 'token-user'): KubeConfig {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('the admin kubeconfig has no current cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, name: 'apiserver' }],
    users: [{ name: user, token }],
    contexts: [{ name: user, cluster: 'apiserver', user }],
    currentContext: user,
  });
  return kc;
}
