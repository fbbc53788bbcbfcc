// The few Kubernetes API calls `tsmesh install`, `uninstall` and `check`
// make, as plain REST with the user's kubeconfig: server-side apply (what
// `kubectl apply --server-side` sends), get, create, replace, delete, and
// requests through the API server's service and pod proxy. The REST paths
// are visible here on purpose: an operator can read exactly what is sent.
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';

/** The field manager of tsmesh install's applies (kubectl's is "kubectl"). */
export const INSTALL_FIELD_MANAGER = 'tsmesh-install';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; resourceVersion?: string; [k: string]: unknown };
  [field: string]: unknown;
}

/** An API answer that was not a success: status, the Status reason and message. */
export class KubeError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly reason: string,
    readonly apiMessage: string,
  ) {
    super(`${method} ${path}: ${status}${reason ? ` ${reason}` : ''}: ${apiMessage}`);
    this.name = 'KubeError';
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof KubeError && e.status === 404;
}

export interface KubeResponse {
  status: number;
  /** Parsed JSON, or the text when the answer is not JSON. */
  body: unknown;
  text: string;
  /** Texts of `Warning: 299 - "..."` headers. */
  warnings: string[];
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | undefined>;
  timeoutMs?: number;
}

function parseWarnings(header: string | string[] | undefined): string[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  return [...text.matchAll(/\d{3} \S+ "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1'));
}

/** Loads a kubeconfig as kubectl does: the file given, else $KUBECONFIG or ~/.kube/config, else in-cluster. */
export function loadKubeConfig(file?: string, context?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (context) {
    if (!kc.getContexts().some((c) => c.name === context)) throw new Error(`context ${JSON.stringify(context)} is not in the kubeconfig (contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`);
    kc.setCurrentContext(context);
  }
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: set KUBECONFIG or pass --kubeconfig (kind: kind get kubeconfig --name tsmesh > kubeconfig)');
  return kc;
}

interface ApiResourceList {
  resources?: { name: string; namespaced: boolean; kind: string }[];
}

/** Tries of a request whose connection breaks (Kube.request). */
const CONNECTION_ATTEMPTS = 3;

const BROKEN_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED']);

/** A connection that broke before the answer was whole: Node's "aborted", "socket hang up", a reset. */
function isBrokenConnection(e: unknown): boolean {
  if (!(e instanceof Error) || e instanceof KubeError) return false;
  const code = (e as NodeJS.ErrnoException).code;
  return e.message === 'aborted' || e.message === 'socket hang up' || (code !== undefined && BROKEN_CONNECTION_CODES.has(code));
}

/** A broken connection's error, saying what broke and what to do; any other error as it was. */
function brokenConnectionError(e: unknown, method: string, path: string, server: string): unknown {
  if (!isBrokenConnection(e)) return e;
  const err = e as NodeJS.ErrnoException;
  return new Error(
    `${method} ${path}: the connection to ${server} broke before its answer was whole (${err.code ?? err.message}); the API server may be overloaded or restarting: check it (kubectl get --raw /readyz) and run the command again`,
    { cause: e },
  );
}

export class Kube {
  private readonly resources = new Map<string, Promise<ApiResourceList | undefined>>();

  constructor(readonly kc: KubeConfig) {}

  /** The API server's URL, for messages. */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '(no cluster)';
  }

  /**
   * One request; a non-2xx answer throws KubeError with the API server's
   * message. A request whose connection broke before its whole answer came
   * (reset, aborted) is sent again, twice at most, when sending it twice
   * changes nothing (GET, PUT, DELETE, and PATCH: server-side apply); a POST
   * is never resent.
   */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<KubeResponse> {
    const resend = method !== 'POST';
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.requestOnce(method, path, opts);
      } catch (e) {
        if (!resend || !isBrokenConnection(e) || attempt === CONNECTION_ATTEMPTS) throw brokenConnectionError(e, method, path, this.server);
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  private async requestOnce(method: string, path: string, opts: RequestOptions): Promise<KubeResponse> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const url = new URL(path, cluster.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const payload = opts.body === undefined ? undefined : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    const reqOpts: Parameters<typeof request>[1] = {
      method,
      headers: { accept: 'application/json, */*', ...(payload ? { 'content-type': opts.contentType ?? 'application/json', 'content-length': String(payload.length) } : {}) },
    };
    await this.kc.applyToHTTPSOptions(reqOpts);
    const send = url.protocol === 'http:' ? httpRequest : request;
    return new Promise<KubeResponse>((resolve, reject) => {
      const req = send(url, reqOpts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve({ status, body, text, warnings: parseWarnings(res.headers['warning']) });
            return;
          }
          const st = (typeof body === 'object' && body !== null ? body : {}) as { message?: string; reason?: string; kind?: string };
          const message = st.kind === 'Status' && st.message ? st.message : text.trim().slice(0, 500) || res.statusMessage || '';
          reject(new KubeError(method, url.pathname, status, st.kind === 'Status' ? (st.reason ?? '') : '', message));
        });
      });
      req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`${method} ${url.pathname}: no answer from ${cluster.server} within ${opts.timeoutMs ?? 30_000} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** GET, or undefined on 404. */
  async get<T>(path: string, query?: Record<string, string | undefined>): Promise<T | undefined> {
    try {
      return (await this.request('GET', path, query ? { query } : {})).body as T;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  private resourceList(apiVersion: string): Promise<ApiResourceList | undefined> {
    let p = this.resources.get(apiVersion);
    if (!p) {
      p = this.get<ApiResourceList>(apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
      // A failed lookup is not remembered (the CRDs may be served a moment later).
      p.catch(() => this.resources.delete(apiVersion));
      this.resources.set(apiVersion, p);
    }
    return p;
  }

  /** Forgets what API discovery said (after CRDs are created). */
  forgetDiscovery(): void {
    this.resources.clear();
  }

  /** The URL path of a kind's collection (namespace from the object) and of the object itself. */
  async paths(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<{ collection: string; object: string }> {
    const list = await this.resourceList(obj.apiVersion);
    const resource = list?.resources?.find((r) => r.kind === obj.kind && !r.name.includes('/'));
    if (!resource) {
      this.resources.delete(obj.apiVersion);
      throw new Error(`${obj.apiVersion} ${obj.kind} is not served by ${this.server}; install its CustomResourceDefinition first, or use a newer Kubernetes`);
    }
    const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
    const ns = obj.metadata.namespace;
    if (resource.namespaced && !ns) throw new Error(`${obj.kind} ${obj.metadata.name} is namespaced but has no metadata.namespace`);
    const collection = `${base}${resource.namespaced ? `/namespaces/${encodeURIComponent(ns!)}` : ''}/${resource.name}`;
    return { collection, object: `${collection}/${encodeURIComponent(obj.metadata.name)}` };
  }

  /**
   * `kubectl apply --server-side --force-conflicts [--dry-run=server]`:
   * fieldValidation=Strict, so an unknown field is an error, not a silent drop.
   */
  async apply(obj: KubeObject, opts: { dryRun?: boolean; force?: boolean; fieldManager?: string } = {}): Promise<KubeResponse> {
    const { object } = await this.paths(obj);
    return this.request('PATCH', object, {
      body: obj,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: opts.fieldManager ?? INSTALL_FIELD_MANAGER, fieldValidation: 'Strict', force: opts.force === false ? undefined : 'true', dryRun: opts.dryRun ? 'All' : undefined },
    });
  }

  async create(obj: KubeObject, opts: { dryRun?: boolean; fieldManager?: string } = {}): Promise<KubeResponse> {
    const { collection } = await this.paths(obj);
    return this.request('POST', collection, { body: obj, query: { fieldManager: opts.fieldManager ?? INSTALL_FIELD_MANAGER, fieldValidation: 'Strict', dryRun: opts.dryRun ? 'All' : undefined } });
  }

  /** PUT with obj.metadata.resourceVersion: a concurrent change fails with 409. */
  async replace(obj: KubeObject, opts: { dryRun?: boolean; fieldManager?: string } = {}): Promise<KubeResponse> {
    const { object } = await this.paths(obj);
    return this.request('PUT', object, { body: obj, query: { fieldManager: opts.fieldManager ?? INSTALL_FIELD_MANAGER, fieldValidation: 'Strict', dryRun: opts.dryRun ? 'All' : undefined } });
  }

  /** The object as stored, or undefined. */
  async read<T = KubeObject>(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<T | undefined> {
    return this.get<T>((await this.paths(obj)).object);
  }

  /** DELETE; false when it was not there. */
  async delete(obj: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>, opts: { dryRun?: boolean } = {}): Promise<boolean> {
    let paths: { object: string };
    try {
      paths = await this.paths(obj);
    } catch (e) {
      // The kind itself is gone (its CRD was removed): nothing of it is left.
      if (/is not served/.test((e as Error).message)) return false;
      throw e;
    }
    try {
      await this.request('DELETE', paths.object, { query: { dryRun: opts.dryRun ? 'All' : undefined, propagationPolicy: 'Background' } });
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }
}

/** `Kind namespace/name`, for messages. */
export function describeObject(o: Pick<KubeObject, 'kind' | 'metadata'>): string {
  return `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
}
