// The tsmesh.io policies -> policy models, and a verdict on each policy (its
// Accepted condition, which status.ts writes): TrafficPolicy and
// AuthorizationPolicy objects are checked field by field (contract/
// validate.ts), against the Services of the model and, for TrafficPolicies,
// against each other; a policy that cannot be applied keeps the last spec of
// the same object that was accepted. Pure; kubernetes-model.ts calls it.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { ValidationError, list, object, oneOf, string } from '../../lib/schema.js';
import { parseAuthorizationRule, parseTrafficPolicy } from '../../contract/validate.js';
import { DEFAULT_RETRY_BUDGET, type AuthorizationRule, type TrafficPolicySpec, FIELDS } from '../../contract/proxy-config.js';
import type { AuthorizationPolicyModel, MeshModel, TrafficPolicyModel } from '../model.js';
import { resolveTrafficPolicies } from '../snapshot.js';
import { AUTHORIZATION_ACTIONS } from '../../contract/vocabulary.js';

/** A tsmesh.io policy object as the API returns it (spec unchecked). */
export interface PolicyObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: unknown;
  status?: PolicyStatus;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface PolicyStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export const ACCEPTED = 'Accepted';
export type AcceptedReason = 'Accepted' | 'InvalidSpec' | 'TargetNotFound' | 'Conflict';

/** What the control plane concluded about one policy object: its Accepted condition. */
export interface Verdict {
  kind: 'TrafficPolicy' | 'AuthorizationPolicy';
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  accepted: boolean;
  reason: AcceptedReason;
  message: string;
}

/** The last spec of a policy object that was accepted: what stays in force while a later one cannot be applied. */
export interface AcceptedPolicy<M> {
  generation: number;
  model: M;
}

export interface AcceptedPolicies {
  traffic: Map<string, AcceptedPolicy<TrafficPolicyModel>>;
  authorization: Map<string, AcceptedPolicy<AuthorizationPolicyModel>>;
}

export function emptyAccepted(): AcceptedPolicies {
  return { traffic: new Map(), authorization: new Map() };
}

const EMPTY_MODEL: MeshModel = {
  mesh: { trustDomain: DEFAULT_TRUST_DOMAIN, mtlsMode: 'STRICT', retryBudget: DEFAULT_RETRY_BUDGET },
  services: [],
  trafficPolicies: [],
  authorizationPolicies: [],
};

const iso = (t: Date | string | undefined): string | undefined => (t === undefined ? undefined : typeof t === 'string' ? t : t.toISOString());

function targetRef(v: unknown, kinds: readonly ('Service' | 'ServiceAccount')[]): { kind: 'Service' | 'ServiceAccount'; name: string } {
  const t = object(v, 'spec.targetRef', ['kind', 'name']);
  return { kind: oneOf(t.kind, 'spec.targetRef.kind', kinds), name: string(t.name, 'spec.targetRef.name') };
}

/** A TrafficPolicy object -> its model; throws ValidationError naming the field (`spec.retries.backoff.max: ...`). */
export function trafficPolicyModel(obj: PolicyObject): TrafficPolicyModel {
  const md = obj.metadata ?? {};
  const spec = object(obj.spec, 'spec', ['targetRef', ...FIELDS.TrafficPolicy]);
  const { targetRef: ref, ...rest } = spec;
  const target = targetRef(ref, ['Service']);
  const parsed: TrafficPolicySpec = parseTrafficPolicy(rest, 'spec');
  const createdAt = iso(md.creationTimestamp);
  return { name: md.name ?? '', namespace: md.namespace ?? '', targetService: target.name, spec: parsed, ...(createdAt ? { createdAt } : {}) };
}

/** An AuthorizationPolicy object -> its model; throws ValidationError naming the field. */
export function authorizationPolicyModel(obj: PolicyObject): AuthorizationPolicyModel {
  const md = obj.metadata ?? {};
  const spec = object(obj.spec, 'spec', ['targetRef', 'action', 'rules']);
  const target = targetRef(spec.targetRef, ['Service', 'ServiceAccount']);
  const action = spec.action === undefined ? undefined : oneOf(spec.action, 'spec.action', AUTHORIZATION_ACTIONS);
  const rules: AuthorizationRule[] = list(spec.rules, 'spec.rules', parseAuthorizationRule, false);
  if (rules.length === 0) throw new ValidationError('spec.rules', 'give at least one rule');
  return { name: md.name ?? '', namespace: md.namespace ?? '', target, ...(action ? { action } : {}), rules };
}

export interface PolicyInput {
  trafficPolicies: readonly PolicyObject[];
  authorizationPolicies: readonly PolicyObject[];
  /** "namespace/name" of every Service in the model. */
  services: ReadonlySet<string>;
  /** Last accepted spec per policy uid; not modified. */
  accepted: AcceptedPolicies;
}

export interface PolicyResult {
  trafficPolicies: TrafficPolicyModel[];
  authorizationPolicies: AuthorizationPolicyModel[];
  verdicts: Verdict[];
  /** The accepted specs to remember for the next round (policies that no longer exist are dropped). */
  accepted: AcceptedPolicies;
}

const keyOf = (m: { namespace: string; name: string }): string => `${m.namespace}/${m.name}`;
const byKey = <T extends { namespace: string; name: string }>(a: T, b: T): number => keyOf(a).localeCompare(keyOf(b));

/**
 * Which policies go into the model, and the verdict on each.
 *
 * A policy whose current spec cannot be applied (InvalidSpec: the schema let
 * it through but validate.ts does not; TargetNotFound: no such Service in its
 * namespace; Conflict: an older TrafficPolicy already governs that Service)
 * is Accepted=False. In its place the model keeps the last spec of the SAME
 * object that was accepted (its `accepted` entry), if it has one: editing a
 * working policy into a broken one leaves the working one in force, as the
 * status message says. A policy that was never accepted is simply absent.
 * Remembered specs compete like current ones: an older policy's remembered
 * spec still wins a conflict against a newer policy.
 *
 * ServiceAccount targets are not checked for existence (a policy may be
 * written before its workload; the control plane does not watch
 * ServiceAccounts).
 */
export function evaluatePolicies(input: PolicyInput): PolicyResult {
  const verdicts: Verdict[] = [];
  const accepted = emptyAccepted();

  const meta = (o: PolicyObject) => ({
    namespace: o.metadata?.namespace ?? '',
    name: o.metadata?.name ?? '',
    uid: o.metadata?.uid ?? keyOf({ namespace: o.metadata?.namespace ?? '', name: o.metadata?.name ?? '' }),
    generation: o.metadata?.generation ?? 0,
  });
  const inForce = (prev: AcceptedPolicy<unknown> | undefined): string =>
    prev ? `; the spec accepted at generation ${prev.generation} stays in force` : '; the policy is not applied';

  // TrafficPolicies: check each, then settle conflicts among what would apply.
  interface Traffic {
    m: ReturnType<typeof meta>;
    prev: AcceptedPolicy<TrafficPolicyModel> | undefined;
    /** The current spec, when it is valid and its Service exists. */
    current: TrafficPolicyModel | undefined;
    /** What competes for the Service: the current spec, or the remembered one. */
    candidate: TrafficPolicyModel | undefined;
    /** Why the current spec lost a conflict. */
    conflict?: string;
  }
  const traffic: Traffic[] = [];
  for (const obj of input.trafficPolicies) {
    const m = meta(obj);
    const prev = input.accepted.traffic.get(m.uid);
    let model: TrafficPolicyModel;
    try {
      model = trafficPolicyModel(obj);
    } catch (e) {
      verdicts.push({ kind: 'TrafficPolicy', ...m, accepted: false, reason: 'InvalidSpec', message: `${(e as Error).message}${inForce(prev)}` });
      traffic.push({ m, prev, current: undefined, candidate: prev?.model });
      continue;
    }
    if (!input.services.has(`${m.namespace}/${model.targetService}`)) {
      verdicts.push({ kind: 'TrafficPolicy', ...m, accepted: false, reason: 'TargetNotFound', message: `Service ${model.targetService} not found in namespace ${m.namespace}${inForce(prev)}` });
      traffic.push({ m, prev, current: undefined, candidate: prev?.model });
      continue;
    }
    traffic.push({ m, prev, current: model, candidate: model });
  }
  // A current spec that loses falls back to the policy's remembered spec, which
  // competes in turn (it may target another Service, and win or lose there).
  // Each policy falls back at most once, so this ends.
  let winners: Set<TrafficPolicyModel>;
  for (;;) {
    // resolveTrafficPolicies reads only trafficPolicies.
    const candidates = traffic.flatMap((t) => (t.candidate ? [t.candidate] : []));
    const { byService, conflicts } = resolveTrafficPolicies({ ...EMPTY_MODEL, trafficPolicies: candidates });
    winners = new Set(byService.values());
    let changed = false;
    for (const c of conflicts) {
      const t = traffic.find((x) => x.candidate === c.policy)!;
      if (t.candidate === t.current && t.current !== undefined) {
        t.conflict = c.reason;
        if (t.prev) {
          t.candidate = t.prev.model;
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const trafficPolicies: TrafficPolicyModel[] = [];
  for (const t of traffic) {
    if (t.candidate && winners.has(t.candidate)) trafficPolicies.push(t.candidate);
    if (t.current && t.candidate === t.current && winners.has(t.current)) {
      accepted.traffic.set(t.m.uid, { generation: t.m.generation, model: t.current });
      verdicts.push({ kind: 'TrafficPolicy', ...t.m, accepted: true, reason: 'Accepted', message: `applied to Service ${t.current.targetService}` });
      continue;
    }
    if (t.current) {
      verdicts.push({ kind: 'TrafficPolicy', ...t.m, accepted: false, reason: 'Conflict', message: `${t.conflict ?? 'conflicts with another policy'}${inForce(t.prev)}` });
    }
    // Not applied now: remember the last accepted spec for as long as the object exists.
    if (t.prev) accepted.traffic.set(t.m.uid, t.prev);
  }

  // AuthorizationPolicies: no conflicts (every selecting policy adds rules).
  const authorizationPolicies: AuthorizationPolicyModel[] = [];
  for (const obj of input.authorizationPolicies) {
    const m = meta(obj);
    const prev = input.accepted.authorization.get(m.uid);
    const base = { kind: 'AuthorizationPolicy' as const, ...m };
    let model: AuthorizationPolicyModel;
    try {
      model = authorizationPolicyModel(obj);
    } catch (e) {
      verdicts.push({ ...base, accepted: false, reason: 'InvalidSpec', message: `${(e as Error).message}${inForce(prev)}` });
      if (prev) {
        authorizationPolicies.push(prev.model);
        accepted.authorization.set(m.uid, prev);
      }
      continue;
    }
    if (model.target.kind === 'Service' && !input.services.has(`${m.namespace}/${model.target.name}`)) {
      verdicts.push({ ...base, accepted: false, reason: 'TargetNotFound', message: `Service ${model.target.name} not found in namespace ${m.namespace}${inForce(prev)}` });
      if (prev) {
        authorizationPolicies.push(prev.model);
        accepted.authorization.set(m.uid, prev);
      }
      continue;
    }
    authorizationPolicies.push(model);
    accepted.authorization.set(m.uid, { generation: m.generation, model });
    verdicts.push({
      ...base,
      accepted: true,
      reason: 'Accepted',
      message: `applied to the workloads of ${model.target.kind} ${model.target.name}`,
    });
  }

  trafficPolicies.sort(byKey);
  authorizationPolicies.sort(byKey);
  verdicts.sort((a, b) => a.kind.localeCompare(b.kind) || keyOf(a).localeCompare(keyOf(b)));
  return { trafficPolicies, authorizationPolicies, verdicts, accepted };
}
