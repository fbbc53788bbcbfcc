// The status of Gateway API routes (HTTPRoute, GRPCRoute) the mesh serves:
// one entry of status.parents per Service parentRef, with controllerName
// tsmesh.io/mesh-controller and the conditions Accepted and ResolvedRefs
// (kubernetes-routes.ts concludes them), written through the status
// subresource by the leader, only when they change. Entries of other
// controllers (a Gateway's) are kept as they are; lastTransitionTime changes
// only when a condition's status does. status-writer.ts writes it, as it does
// for policies.
import { GATEWAY_API_GROUP, GATEWAY_API_PLURALS, GATEWAY_API_VERSION, MESH_CONTROLLER_NAME } from '../contract/names.js';
import { StatusWriter, type StatusKind, type StatusWriterOptions } from './status-writer.js';
import type { ConditionVerdict, ParentReference, RouteCondition, RouteParentStatus, RouteStatus, RouteVerdict } from './sources/kubernetes-routes.js';

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

const ROUTE_STATUS: StatusKind<RouteVerdict, RouteStatus> = {
  noun: 'route',
  group: GATEWAY_API_GROUP,
  version: GATEWAY_API_VERSION,
  plurals: { HTTPRoute: GATEWAY_API_PLURALS.httpRoute, GRPCRoute: GATEWAY_API_PLURALS.grpcRoute },
  desired: (current, v) => desiredRouteStatus(current, v),
  signature: (v) => JSON.stringify([v.generation, v.parents]),
  logged: (v) => ({ parents: v.parents.map((p) => `${p.parentRef.namespace ?? v.namespace}/${p.parentRef.name}: ${p.accepted.reason}, ${p.resolvedRefs.reason}`) }),
};

/** Writes route verdicts; one write in flight per object. */
export class RouteStatusWriter extends StatusWriter<RouteVerdict, RouteStatus> {
  constructor(opts: RouteStatusWriterOptions) {
    super(opts, ROUTE_STATUS);
  }
}
