// Writing the status of the objects the control plane judges (tsmesh.io
// policies, Gateway API routes): each object's verdict becomes a status
// through the kind's builder, written through the status subresource only
// when it changes. RBAC grants `update` on the status subresources, so writes
// are a replace (PUT) against the cached resourceVersion: a 409 means the
// object changed meanwhile, and the change arriving through the watch brings
// a new round. One write is in flight per object.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { CONTROL_PLANE_NAME } from '../contract/names.js';

/** A new round after a failed status write: 1 s later, doubling to 30 s, back to 1 s after a success. */
export class StatusRetry {
  private timer: NodeJS.Timeout | undefined;
  private delay = 1000;
  private closed = false;

  constructor(private readonly retry: () => void) {}

  succeeded(): void {
    this.delay = 1000;
  }

  failed(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.retry();
    }, this.delay);
    this.timer.unref();
    this.delay = Math.min(this.delay * 2, 30_000);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

export interface StatusWriterOptions {
  kc: KubeConfig;
  log: Logger;
  /** Asks for a new round after a failed write; called after a backoff (1 s doubling to 30 s, reset by a success). */
  retry: () => void;
}

/** What a status writer needs to know of one object's verdict. */
export interface JudgedObject {
  kind: string;
  namespace: string;
  name: string;
  uid: string;
}

/** How one family of kinds (policies, routes) turns a verdict into a status and where it is written. */
export interface StatusKind<V extends JudgedObject, S> {
  /** In log messages: "<noun> status". */
  noun: string;
  /** The API group and version the kinds are served at. */
  group: string;
  version: string;
  /** The resource (plural) of each kind. */
  plurals: Readonly<Record<V['kind'], string>>;
  /** The status `current` should become for `v`, or undefined when it already says that. */
  desired: (current: S | undefined, v: V) => S | undefined;
  /** Equal for two verdicts that would write the same status. */
  signature: (v: V) => string;
  /** Fields logged with a written status. */
  logged: (v: V) => Record<string, unknown>;
}

/** Writes the verdicts of one family of kinds; one write in flight per object. */
export class StatusWriter<V extends JudgedObject, S> {
  private readonly api: CustomObjectsApi;
  private readonly inFlight = new Set<string>();
  /** uid -> what was last written, and against which resourceVersion. */
  private readonly written = new Map<string, { fromVersion: string; signature: string }>();
  private closed = false;
  private readonly retry: StatusRetry;

  constructor(
    private readonly opts: StatusWriterOptions,
    private readonly kind: StatusKind<V, S>,
  ) {
    this.api = opts.kc.makeApiClient(CustomObjectsApi);
    this.retry = new StatusRetry(opts.retry);
  }

  /** Brings each object's status in line with its verdict. `lookup` gives the cached object. */
  sync<O extends { metadata?: { resourceVersion?: string | undefined } | undefined; status?: S | undefined }>(verdicts: readonly V[], lookup: (v: V) => O | undefined): void {
    if (this.closed) return;
    const live = new Set(verdicts.map((v) => v.uid));
    for (const uid of this.written.keys()) if (!live.has(uid)) this.written.delete(uid);
    for (const v of verdicts) {
      const obj = lookup(v);
      const fromVersion = obj?.metadata?.resourceVersion;
      if (!obj || !fromVersion) continue;
      const status = this.kind.desired(obj.status, v);
      if (!status) continue;
      const signature = this.kind.signature(v);
      const last = this.written.get(v.uid);
      // Written already; the cache has not caught up with our write yet.
      if (last && last.signature === signature && last.fromVersion === fromVersion) continue;
      if (this.inFlight.has(v.uid)) continue;
      this.write(v, { ...obj, apiVersion: `${this.kind.group}/${this.kind.version}`, kind: v.kind, status }, fromVersion, signature);
    }
  }

  private write(v: V, body: object, fromVersion: string, signature: string): void {
    const { noun, group, version } = this.kind;
    const fields = { kind: v.kind, namespace: v.namespace, name: v.name };
    this.inFlight.add(v.uid);
    this.api
      .replaceNamespacedCustomObjectStatus({ group, version, namespace: v.namespace, plural: this.kind.plurals[v.kind as V['kind']], name: v.name, body, fieldManager: CONTROL_PLANE_NAME })
      .then(
        () => {
          this.written.set(v.uid, { fromVersion, signature });
          this.retry.succeeded();
          this.opts.log.info(`${noun} status`, { ...fields, ...this.kind.logged(v) });
        },
        (err: unknown) => {
          const code = (err as { code?: unknown }).code;
          if (code === 404 || code === 409) {
            // Deleted, or changed since it was cached: the watch brings the news and a new round.
            this.opts.log.debug(`${noun} status not written; the object changed`, { ...fields, status: code });
            return;
          }
          this.opts.log.warn(`writing ${noun} status failed; will retry`, { ...fields, error: (err as Error).message });
          this.retry.failed();
        },
      )
      .finally(() => this.inFlight.delete(v.uid));
  }

  close(): void {
    this.closed = true;
    this.retry.close();
  }
}
