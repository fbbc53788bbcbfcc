// The status of tsmesh.io policies: each policy's verdict (Accepted True, or
// False with InvalidSpec, TargetNotFound or Conflict) written as a standard
// metav1.Condition through the status subresource, only when it changes
// (status-writer.ts writes it).
import { AUTHORIZATION_POLICY_PLURAL, POLICY_GROUP, POLICY_VERSION, TRAFFIC_POLICY_PLURAL } from '../contract/names.js';
import { ACCEPTED, type Condition, type PolicyStatus, type Verdict } from './sources/kubernetes-policies.js';
import { StatusWriter, type StatusKind, type StatusWriterOptions } from './status-writer.js';

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

const POLICY_STATUS: StatusKind<Verdict, PolicyStatus> = {
  noun: 'policy',
  group: POLICY_GROUP,
  version: POLICY_VERSION,
  plurals: { TrafficPolicy: TRAFFIC_POLICY_PLURAL, AuthorizationPolicy: AUTHORIZATION_POLICY_PLURAL },
  desired: (current, v) => desiredStatus(current, v),
  signature: (v) => `${v.generation}|${v.accepted}|${v.reason}|${v.message}`,
  logged: (v) => ({ accepted: v.accepted, reason: v.reason, message: v.message }),
};

/** Writes policy verdicts; one write in flight per object. */
export class PolicyStatusWriter extends StatusWriter<Verdict, PolicyStatus> {
  constructor(opts: StatusWriterOptions) {
    super(opts, POLICY_STATUS);
  }
}
