// The status of tsmesh.io policies: each policy's verdict (Accepted True, or
// False with InvalidSpec, TargetNotFound or Conflict) written as a standard
// metav1.Condition through the status subresource, only when it changes.
// RBAC grants `update` on the status subresources, so writes are a replace
// (PUT) against the cached resourceVersion: a 409 means the object changed
// meanwhile, and the change arriving through the watch brings a new round.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { CONTROL_PLANE_NAME, AUTHORIZATION_POLICY_PLURAL, POLICY_GROUP, POLICY_VERSION, TRAFFIC_POLICY_PLURAL } from '../contract/names.js';
import { ACCEPTED, type Condition, type PolicyObject, type PolicyStatus, type Verdict } from './sources/kubernetes-policies.js';


/**
 * The status `current` should become for verdict `v`, or undefined when it
 * already says that. Other condition types are kept; lastTransitionTime
 * changes only when the condition's status does.
 */
export function desiredStatus(current: PolicyStatus | undefined, v: Verdict, now: Date = new Date()): PolicyStatus | undefined {
  const conditions = current?.conditions ?? [];
  const old = conditions.find((c) => c.type === ACCEPTED);
  const status: Condition['status'] = v.accepted ? 'True' : 'False';
  if (
    old &&
    old.status === status &&
    old.reason === v.reason &&
    old.message === v.message &&
    old.observedGeneration === v.generation &&
    current?.observedGeneration === v.generation
  )
    return undefined;
  const accepted: Condition = {
    type: ACCEPTED,
    status,
    observedGeneration: v.generation,
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    reason: v.reason,
    // metav1.Condition caps messages at 32768 characters.
    message: v.message.length > 32_000 ? `${v.message.slice(0, 32_000)}...` : v.message,
  };
  return { ...current, observedGeneration: v.generation, conditions: [...conditions.filter((c) => c.type !== ACCEPTED), accepted] };
}

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

const PLURAL = { TrafficPolicy: TRAFFIC_POLICY_PLURAL, AuthorizationPolicy: AUTHORIZATION_POLICY_PLURAL } as const;

export interface StatusWriterOptions {
  kc: KubeConfig;
  log: Logger;
  /** Asks for a new round after a failed write; called after a backoff (1 s doubling to 30 s, reset by a success). */
  retry: () => void;
}

/** Writes policy verdicts; one write in flight per object. */
export class PolicyStatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly inFlight = new Set<string>();
  /** uid -> what was last written, and against which resourceVersion. */
  private readonly written = new Map<string, { fromVersion: string; signature: string }>();
  private closed = false;
  private readonly retry: StatusRetry;

  constructor(private readonly opts: StatusWriterOptions) {
    this.api = opts.kc.makeApiClient(CustomObjectsApi);
    this.retry = new StatusRetry(opts.retry);
  }

  /** Brings each object's status in line with its verdict. `lookup` gives the cached object. */
  sync(verdicts: readonly Verdict[], lookup: (v: Verdict) => PolicyObject | undefined): void {
    if (this.closed) return;
    const live = new Set(verdicts.map((v) => v.uid));
    for (const uid of this.written.keys()) if (!live.has(uid)) this.written.delete(uid);
    for (const v of verdicts) {
      const obj = lookup(v);
      if (!obj?.metadata?.resourceVersion) continue;
      const status = desiredStatus(obj.status, v);
      if (!status) continue;
      const signature = `${v.generation}|${v.accepted}|${v.reason}|${v.message}`;
      const last = this.written.get(v.uid);
      // Written already; the cache has not caught up with our write yet.
      if (last && last.signature === signature && last.fromVersion === obj.metadata.resourceVersion) continue;
      if (this.inFlight.has(v.uid)) continue;
      this.write(v, obj, status, signature);
    }
  }

  private write(v: Verdict, obj: PolicyObject, status: PolicyStatus, signature: string): void {
    const fromVersion = obj.metadata!.resourceVersion!;
    this.inFlight.add(v.uid);
    const body = { ...obj, apiVersion: `${POLICY_GROUP}/${POLICY_VERSION}`, kind: v.kind, status };
    this.api
      .replaceNamespacedCustomObjectStatus({
        group: POLICY_GROUP,
        version: POLICY_VERSION,
        namespace: v.namespace,
        plural: PLURAL[v.kind],
        name: v.name,
        body,
        fieldManager: CONTROL_PLANE_NAME,
      })
      .then(
        () => {
          this.written.set(v.uid, { fromVersion, signature });
          this.retry.succeeded();
          this.opts.log.info('policy status', { kind: v.kind, namespace: v.namespace, name: v.name, accepted: v.accepted, reason: v.reason, message: v.message });
        },
        (err: unknown) => {
          const code = (err as { code?: unknown }).code;
          if (code === 404 || code === 409) {
            // Deleted, or changed since it was cached: the watch brings the news and a new round.
            this.opts.log.debug('policy status not written; the object changed', { kind: v.kind, namespace: v.namespace, name: v.name, status: code });
            return;
          }
          this.opts.log.warn('writing policy status failed; will retry', { kind: v.kind, namespace: v.namespace, name: v.name, error: (err as Error).message });
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
