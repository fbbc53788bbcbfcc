// The status of Gateway API routes (HTTPRoute, GRPCRoute) the mesh serves:
// one entry of status.parents per Service parentRef, with controllerName
// tsmesh.io/mesh-controller and the conditions Accepted and ResolvedRefs
// (kubernetes-routes.ts concludes them), written through the status
// subresource by the leader, only when they change. Entries of other
// controllers (a Gateway's) are kept as they are; lastTransitionTime changes
// only when a condition's status does. Writes are a replace (PUT) against the
// cached resourceVersion, as for policies (status.ts).
import { CustomObjectsApi } from '@kubernetes/client-node';
import { CONTROL_PLANE_NAME, GATEWAY_API_GROUP, GATEWAY_API_PLURALS, GATEWAY_API_VERSION, MESH_CONTROLLER_NAME } from '../contract/names.js';
import { StatusRetry, type StatusWriterOptions } from './status.js';
import type { ConditionVerdict, ParentReference, RouteCondition, RouteObject, RouteParentStatus, RouteStatus, RouteVerdict } from './sources/kubernetes-routes.js';

const sameRef = (a: ParentReference, b: ParentReference): boolean =>
  (a.group ?? '') === (b.group ?? '') && (a.kind ?? '') === (b.kind ?? '') && a.name === b.name && (a.namespace ?? '') === (b.namespace ?? '') && a.port === b.port && a.sectionName === b.sectionName;

function condition(type: string, v: ConditionVerdict, generation: number, old: RouteCondition | undefined, now: string): RouteCondition {
  const status = v.status ? 'True' : 'False';
  return {
    type,
    status,
    observedGeneration: generation,
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : now,
    reason: v.reason,
    // metav1.Condition caps messages at 32768 characters.
    message: v.message.length > 32_000 ? `${v.message.slice(0, 32_000)}...` : v.message,
  };
}

/** The status `current` should become for verdict `v`, or undefined when it already says that. */
export function desiredRouteStatus(current: RouteStatus | undefined, v: RouteVerdict, now: Date = new Date()): RouteStatus | undefined {
  const at = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const others = (current?.parents ?? []).filter((p) => p.controllerName !== MESH_CONTROLLER_NAME);
  const ours = (current?.parents ?? []).filter((p) => p.controllerName === MESH_CONTROLLER_NAME);
  const next: RouteParentStatus[] = v.parents.map((p) => {
    const old = ours.find((o) => sameRef(o.parentRef, p.parentRef))?.conditions ?? [];
    return {
      parentRef: p.parentRef,
      controllerName: MESH_CONTROLLER_NAME,
      conditions: [
        condition('Accepted', p.accepted, v.generation, old.find((c) => c.type === 'Accepted'), at),
        condition('ResolvedRefs', p.resolvedRefs, v.generation, old.find((c) => c.type === 'ResolvedRefs'), at),
      ],
    };
  });
  if (JSON.stringify(next) === JSON.stringify(ours)) return undefined;
  return { ...current, parents: [...others, ...next] };
}

export type RouteStatusWriterOptions = StatusWriterOptions;

const PLURAL = { HTTPRoute: GATEWAY_API_PLURALS.httpRoute, GRPCRoute: GATEWAY_API_PLURALS.grpcRoute } as const;

/** Writes route verdicts; one write in flight per object. */
export class RouteStatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly inFlight = new Set<string>();
  /** uid -> the resourceVersion last written against, and what. */
  private readonly written = new Map<string, { fromVersion: string; signature: string }>();
  private closed = false;
  private readonly retry: StatusRetry;

  constructor(private readonly opts: RouteStatusWriterOptions) {
    this.api = opts.kc.makeApiClient(CustomObjectsApi);
    this.retry = new StatusRetry(opts.retry);
  }

  sync(verdicts: readonly RouteVerdict[], lookup: (v: RouteVerdict) => RouteObject | undefined): void {
    if (this.closed) return;
    const live = new Set(verdicts.map((v) => v.uid));
    for (const uid of this.written.keys()) if (!live.has(uid)) this.written.delete(uid);
    for (const v of verdicts) {
      const obj = lookup(v);
      const fromVersion = obj?.metadata?.resourceVersion;
      if (!obj || !fromVersion) continue;
      const status = desiredRouteStatus(obj.status, v);
      if (!status) continue;
      const signature = JSON.stringify([v.generation, v.parents]);
      const last = this.written.get(v.uid);
      // Written already; the cache has not caught up with our write yet.
      if ((last && last.signature === signature && last.fromVersion === fromVersion) || this.inFlight.has(v.uid)) continue;
      this.inFlight.add(v.uid);
      const body = { ...obj, apiVersion: `${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}`, kind: v.kind, status };
      const fields = { kind: v.kind, namespace: v.namespace, name: v.name };
      this.api
        .replaceNamespacedCustomObjectStatus({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, namespace: v.namespace, plural: PLURAL[v.kind], name: v.name, body, fieldManager: CONTROL_PLANE_NAME })
        .then(
          () => {
            this.written.set(v.uid, { fromVersion, signature });
            this.retry.succeeded();
            this.opts.log.info('route status', { ...fields, parents: v.parents.map((p) => `${p.parentRef.namespace ?? v.namespace}/${p.parentRef.name}: ${p.accepted.reason}, ${p.resolvedRefs.reason}`) });
          },
          (err: unknown) => {
            const code = (err as { code?: unknown }).code;
            // Deleted, or changed since it was cached: the watch brings the news and a new round.
            if (code === 404 || code === 409) return;
            this.opts.log.warn('writing route status failed; will retry', { ...fields, error: (err as Error).message });
            this.retry.failed();
          },
        )
        .finally(() => this.inFlight.delete(v.uid));
    }
  }

  close(): void {
    this.closed = true;
    this.retry.close();
  }
}
