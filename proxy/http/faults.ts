// Fault injection: delay a share of requests by a duration, then abort a
// share with a status, before they reach any endpoint (Envoy's order: the
// delay first, so a request can be both delayed and aborted). Each injected
// fault is counted by kind. Aborts carry `x-tsmesh-error: fault-injected`
// so nobody mistakes them for the service's own errors.
import { parseDuration } from '../../lib/duration.js';
import type { Scheduler } from '../../lib/scheduler.js';
import type { FaultPolicy } from '../../contract/proxy-config.js';
import { localResponse, type Layer, type ProxyResponse } from './types.js';

export interface FaultRules {
  /** Shares are 0-1. */
  delayShare: number;
  delayMs: number;
  abortShare: number;
  abortStatus: number;
}

/** undefined when the policy injects nothing. */
export function compileFaults(policy: FaultPolicy | undefined): FaultRules | undefined {
  const delayShare = (policy?.delay?.percent ?? 0) / 100;
  const abortShare = (policy?.abort?.percent ?? 0) / 100;
  if (delayShare === 0 && abortShare === 0) return undefined;
  return {
    delayShare,
    delayMs: policy?.delay ? parseDuration(policy.delay.duration) : 0,
    abortShare,
    abortStatus: policy?.abort?.status ?? 500,
  };
}

export interface FaultOptions {
  rules: FaultRules;
  service: string;
  /** Counts an injected fault. */
  injected(kind: 'abort' | 'delay'): void;
  scheduler: Scheduler;
  random?: () => number;
}

export function faultLayer(o: FaultOptions): Layer {
  const { rules, scheduler } = o;
  const random = o.random ?? Math.random;
  const abort = (): ProxyResponse => {
    o.injected('abort');
    return localResponse(rules.abortStatus, 'fault-injected', `tsmesh: fault injected by the traffic policy of ${o.service}`);
  };
  return (next) => (req) => {
    const delay = rules.delayShare > 0 && random() < rules.delayShare;
    const aborted = rules.abortShare > 0 && random() < rules.abortShare;
    if (!delay) return aborted ? Promise.resolve(abort()) : next(req);
    o.injected('delay');
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        scheduler.clearTimeout(timer);
        reject(req.signal.reason as Error);
      };
      const timer = scheduler.setTimeout(() => {
        req.signal.removeEventListener('abort', onAbort);
        resolve();
      }, rules.delayMs);
      req.signal.addEventListener('abort', onAbort, { once: true });
    }).then(() => (aborted ? abort() : next(req)));
  };
}
