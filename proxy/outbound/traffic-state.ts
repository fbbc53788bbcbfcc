// What traffic management remembers across configs: a balancer per service
// port (latency estimates, requests in flight, ejections), one per pinned
// endpoint (a pod the app dialled by its address), and a retry budget
// per destination service. Configs change whenever an endpoint does; the
// stacks built from them are thrown away, this state is not. It also holds
// the clock and randomness the layers use, so tests can replace both.
import { monotonicScheduler, type Scheduler } from '../../lib/scheduler.js';
import { P2cBalancer } from '../balance/p2c.js';
import { pinnedTarget, type RoutingTable, type ServiceTarget } from '../config/table.js';
import type { RetryBudget as RetryBudgetSpec } from '../../contract/proxy-config.js';
import { PendingQueue } from '../http/limits.js';
import { RetryBudget } from '../http/retry-budget.js';

export interface TrafficStateOptions {
  scheduler?: Scheduler;
  random?: () => number;
}

export class TrafficState {
  readonly scheduler: Scheduler;
  readonly random: () => number;
  private readonly balancers = new Map<string, { balancer: P2cBalancer; target: ServiceTarget; queue: PendingQueue }>();
  private readonly budgets = new Map<string, RetryBudget>();

  constructor(o: TrafficStateOptions = {}) {
    this.scheduler = o.scheduler ?? monotonicScheduler;
    this.random = o.random ?? Math.random;
  }

  /** The balancer of a service port, holding the endpoints of `target`; a pinned target has its own. */
  balancer(target: ServiceTarget): P2cBalancer {
    const key = balancerKey(target);
    let entry = this.balancers.get(key);
    if (!entry) {
      entry = { balancer: new P2cBalancer(this.scheduler, this.random), target, queue: new PendingQueue(this.scheduler) };
      entry.balancer.update(target.endpoints);
      this.balancers.set(key, entry);
    } else if (entry.target !== target) {
      entry.target = target;
      entry.balancer.update(target.endpoints);
    }
    return entry.balancer;
  }

  /** Requests of a service port waiting for an endpoint under its limit (http/limits.ts); made with its balancer. */
  queue(target: ServiceTarget): PendingQueue {
    this.balancer(target);
    return this.balancers.get(balancerKey(target))!.queue;
  }

  /** Endpoints out of service now, per destination service (the tsmesh_endpoints_ejected gauge). */
  ejected(): Map<string, number> {
    const out = new Map<string, number>();
    for (const { balancer, target } of this.balancers.values()) out.set(target.key, (out.get(target.key) ?? 0) + balancer.ejectedCount);
    return out;
  }

  /** The retry budget of a destination service; routes with the same budget settings share it. */
  budget(service: string, spec: RetryBudgetSpec): RetryBudget {
    const key = `${service}|${spec.ratio}|${spec.minRetriesPerSecond}|${spec.ttl}`;
    let budget = this.budgets.get(key);
    if (!budget) this.budgets.set(key, (budget = RetryBudget.from(spec, this.scheduler)));
    return budget;
  }

  /** Forgets services and ports that left the config. */
  retain(table: RoutingTable): void {
    for (const [key, entry] of this.balancers) {
      const { pinned } = entry.target;
      const still = pinned ? pinnedTarget(table, pinned.address, pinned.port) : table.byName.get(entry.target.key)?.get(entry.target.port.port);
      if (still === undefined || still.key !== entry.target.key || still.port.port !== entry.target.port.port) this.balancers.delete(key);
    }
    for (const key of this.budgets.keys()) if (!table.byName.has(key.slice(0, key.indexOf('|')))) this.budgets.delete(key);
  }
}

/** A service port's balancer, or a pinned endpoint's of it: "name.namespace:port" or "name.namespace:port@address:port". */
const balancerKey = (t: ServiceTarget): string => (t.pinned ? `${t.key}:${t.port.port}@${t.pinned.address}:${t.pinned.port}` : `${t.key}:${t.port.port}`);
