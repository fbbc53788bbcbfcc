// Kubernetes Events the control plane records on objects it refuses, so that
// `kubectl describe` and `kubectl get events` say what was wrong and what
// stays in force, beside the error in the control plane's log. Recording is
// best effort: a failed create is logged and never stops the control plane.
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { CONTROL_PLANE_NAME } from '../contract/names.js';

/** The object an Event is about. */
export interface EventTarget {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string | undefined;
  resourceVersion?: string | undefined;
}

/** Longer messages are cut: kubectl shows Events a line each. */
const MAX_MESSAGE = 1024;

/** The Event `warning()` creates. */
export function warningEvent(target: EventTarget, reason: string, message: string, host: string, now: Date = new Date()): CoreV1Event {
  const { apiVersion, kind, namespace, name, uid, resourceVersion } = target;
  return {
    metadata: { generateName: `${name}.`, namespace },
    involvedObject: { apiVersion, kind, namespace, name, ...(uid ? { uid } : {}), ...(resourceVersion ? { resourceVersion } : {}) },
    reason,
    message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message,
    type: 'Warning',
    source: { component: CONTROL_PLANE_NAME, host },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

export class EventRecorder {
  private readonly core: CoreV1Api;

  constructor(
    kc: KubeConfig,
    private readonly log: Logger,
    /** This replica (its pod name), as the Event's source host. */
    private readonly host: string,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Records a Warning Event on `target`, in its namespace. */
  warning(target: EventTarget, reason: string, message: string): void {
    const { namespace, name, kind } = target;
    this.core.createNamespacedEvent({ namespace, body: warningEvent(target, reason, message, this.host) }).catch((e: unknown) => {
      this.log.warn('could not record an Event', { reason, on: `${kind} ${namespace}/${name}`, error: (e as Error).message });
    });
  }
}
