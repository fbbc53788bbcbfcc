// Power of two choices over a peak-EWMA of latency (Finagle's and Linkerd's
// balancer): sample two endpoints at random, send to the one with the lower
// cost = latency estimate x (requests in flight + 1) / weight. Cheap (two
// random draws, no sorting), and it steers away from slow or busy endpoints;
// with many endpoints under load it spreads requests, but with two endpoints
// at about one request in flight it mostly sends to the faster one (the
// other's estimate decays back while it is idle). Per request for HTTP, per
// connection for L4 (then "in flight" counts open connections).
//
// An endpoint with HTTP requests in flight that has not answered one for S
// ms is taken as at least S ms slow: an estimate fades while no sample
// comes, and without that floor an endpoint that accepts and never answers
// (a hung app) would look ever cheaper while its requests wait, and draw
// every caller.
//
// The balancer also owns who is in service: the circuit breaker (http/
// breaker.ts) decides when an endpoint leaves and for how long; an ejected
// endpoint returns through a single probe request once its time is up.
import type { Clock } from '../../lib/scheduler.js';
import type { ResolvedEndpoint } from '../config/table.js';
import type { SlidingWindow } from './sliding-window.js';

export interface BalancerOptions {
  /** How fast old latency observations fade (Linkerd: 10 s). */
  decayMs: number;
  /** The estimate for an endpoint never measured. */
  defaultRttMs: number;
  /**
   * An idle endpoint with no sample for this long is tried again as if new:
   * at low concurrency one slow sample would otherwise keep it out for about
   * `decayMs`, and the balancer would never learn that it is fast again.
   */
  reprobeMs: number;
  /** The latency recorded for a connect failure, reset or timeout, so an endpoint that does not answer looks slow. */
  noAnswerPenaltyMs: number;
}

export const DEFAULT_BALANCER: Readonly<BalancerOptions> = { decayMs: 10_000, defaultRttMs: 30, noAnswerPenaltyMs: 1000, reprobeMs: 1000 };

/** Everything kept about one endpoint; it outlives configs that keep the endpoint. */
export interface EndpointState {
  ep: ResolvedEndpoint;
  readonly key: string;
  /** Peak EWMA of the latency, as of `ewmaAt`; the default estimate until `measured`. */
  ewmaMs: number;
  ewmaAt: number;
  measured: boolean;
  /** Requests (or L4 connections) in flight: the load P2C weighs. */
  pending: number;
  /** When it was last picked with no HTTP request in flight: with `ewmaAt`, how long its requests have waited without an answer. */
  busySince: number;
  /** HTTP requests in flight, the part of `pending` the overload limits count (http/limits.ts): L4 connections on the same port (a fallback after protocol detection) do not hold HTTP back. */
  requests: number;
  /** 0 while in service; otherwise out until this time, then probed. */
  ejectedUntil: number;
  /** True while the one probe request after an ejection is in flight. */
  probing: boolean;
  /** Ejections in a row, for the backoff; decays while the endpoint stays in. */
  ejections: number;
  /** When it last came back into service. */
  returnedAt: number;
  /** Breaker accounting. */
  consecutiveFailures: number;
  /** Breaker accounting: totalA requests, totalB failures; created when a failure-rate rule applies. */
  outcomes: SlidingWindow | undefined;
}

export const endpointKey = (ep: Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>): string => `${ep.address}|${ep.port}|${ep.identity ?? ''}`;

const EPSILON_MS = 0.001;

export class P2cBalancer {
  private states: EndpointState[] = [];
  private ejected = 0;

  constructor(
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
    private readonly opts: BalancerOptions = DEFAULT_BALANCER,
  ) {}

  get endpoints(): readonly EndpointState[] {
    return this.states;
  }

  /** Endpoints out of service now (ejected or probing). */
  get ejectedCount(): number {
    return this.ejected;
  }

  /** Takes a new endpoint list; endpoints that stay keep their state. */
  update(endpoints: readonly ResolvedEndpoint[]): void {
    const old = new Map(this.states.map((s) => [s.key, s]));
    const now = this.clock.now();
    this.states = endpoints.map((ep) => {
      const key = endpointKey(ep);
      const s = old.get(key);
      if (s) {
        s.ep = ep;
        return s;
      }
      return {
        ep,
        key,
        ewmaMs: this.opts.defaultRttMs,
        ewmaAt: now,
        measured: false,
        pending: 0,
        busySince: now,
        requests: 0,
        ejectedUntil: 0,
        probing: false,
        ejections: 0,
        returnedAt: now,
        consecutiveFailures: 0,
        outcomes: undefined,
      };
    });
    this.ejected = this.states.filter((s) => s.ejectedUntil !== 0).length;
  }

  /**
   * The endpoint for the next request or connection; undefined when none is in service.
   * With `probe` (HTTP, where the breaker hears the outcome) an ejected endpoint whose time is up comes first.
   */
  pick(probe = true, avoid?: string): EndpointState | undefined {
    return this.busy(this.choose(probe, avoid));
  }

  /** Notes when a picked endpoint had no HTTP request in flight: the time its next one starts waiting from. */
  private busy(s: EndpointState | undefined): EndpointState | undefined {
    if (s !== undefined && s.requests === 0) s.busySince = this.clock.now();
    return s;
  }

  private choose(probe: boolean, avoid: string | undefined): EndpointState | undefined {
    const states = this.states;
    const n = states.length;
    if (probe && this.ejected > 0) {
      const probe = this.dueProbe();
      if (probe) return probe;
    }
    const available = n - this.ejected;
    if (available <= 1) return available === 1 ? this.nthAvailable(0, undefined) : undefined;
    if (avoid !== undefined) {
      // A retry: the two candidates are drawn from the endpoints other than the one that just failed.
      const not = states.find((s) => s.key === avoid && s.ejectedUntil === 0);
      if (not !== undefined) {
        if (available === 2) return this.nthAvailable(0, not);
        const m = available - 1;
        const i = Math.floor(this.random() * m);
        let j = Math.floor(this.random() * (m - 1));
        if (j >= i) j++;
        const a = this.nthAvailable(i, not);
        const b = this.nthAvailable(j, not);
        const now = this.clock.now();
        return this.costAt(b, now) < this.costAt(a, now) ? b : a;
      }
    }
    let a: EndpointState;
    let b: EndpointState;
    if (this.ejected === 0) {
      // Two distinct indices without a scan: draw the second from n - 1 and skip the first.
      const i = Math.floor(this.random() * n);
      let j = Math.floor(this.random() * (n - 1));
      if (j >= i) j++;
      a = states[i]!;
      b = states[j]!;
    } else {
      a = this.nthAvailable(Math.floor(this.random() * available), undefined);
      b = this.nthAvailable(Math.floor(this.random() * (available - 1)), a);
    }
    // Ties go to the first draw, itself uniformly random.
    const now = this.clock.now();
    return this.costAt(b, now) < this.costAt(a, now) ? b : a;
  }

  /**
   * The cheapest endpoint in service with fewer than `limit` HTTP requests in flight (a scan: only when
   * the one picked is at its limit), or undefined when every one is.
   */
  pickUnder(limit: number): EndpointState | undefined {
    const now = this.clock.now();
    let best: EndpointState | undefined;
    let bestCost = Infinity;
    for (const s of this.states) {
      if (s.ejectedUntil !== 0 || s.requests >= limit) continue;
      const c = this.costAt(s, now);
      if (c < bestCost) {
        best = s;
        bestCost = c;
      }
    }
    return this.busy(best);
  }

  /**
   * cost = latency estimate (fading toward 0 while no sample comes, but never
   * below how long its requests in flight have waited without an answer)
   * x (in flight + 1) / weight.
   */
  cost(s: EndpointState): number {
    return this.costAt(s, this.clock.now());
  }

  private costAt(s: EndpointState, now: number): number {
    // An endpoint never measured is tried as soon as it is idle, so a new or
    // returning endpoint is not starved by a default estimate that measured
    // peers beat; while its first request is out it costs the default.
    if (s.pending === 0 && (!s.measured || now - s.ewmaAt > this.opts.reprobeMs)) return 0;
    const idle = now - s.ewmaAt;
    let estimate = !s.measured ? this.opts.defaultRttMs : idle > 0 ? s.ewmaMs * Math.exp(-idle / this.opts.decayMs) : s.ewmaMs;
    // HTTP requests waiting for their answer's head since the last answer: at least that slow.
    // (An L4 connection stays in flight for its whole life, answered or not: it sets no floor.)
    if (s.requests > 0) estimate = Math.max(estimate, now - Math.max(s.ewmaAt, s.busySince));
    return ((estimate + EPSILON_MS) * (s.pending + 1)) / s.ep.weight;
  }

  /** Records a latency. `answered` false (connect failure, reset, timeout) records at least the no-answer penalty. */
  observe(s: EndpointState, rttMs: number, answered: boolean): void {
    const now = this.clock.now();
    const rtt = answered ? rttMs : Math.max(rttMs, this.opts.noAnswerPenaltyMs);
    // The first sample replaces the default estimate, and so does the first
    // after the reprobe time without one: the endpoint was out of the
    // picks, and an estimate that old (a penalty, a slow spell) must not
    // keep it out once it answers well again. Otherwise, peak: a slower
    // sample takes over at once, faster ones pull the estimate down by how
    // long it has been since the last one.
    if (!s.measured || rtt > s.ewmaMs || now - s.ewmaAt > this.opts.reprobeMs) s.ewmaMs = rtt;
    else {
      const w = Math.exp(-Math.max(0, now - s.ewmaAt) / this.opts.decayMs);
      s.ewmaMs = s.ewmaMs * w + rtt * (1 - w);
    }
    s.ewmaAt = now;
    s.measured = true;
  }

  /**
   * A request whose caller gave up after `rttMs`: the endpoint took at least that long, so the
   * estimate rises to it (a hung endpoint looks slow, not idle), but is never pulled down.
   */
  observeAtLeast(s: EndpointState, rttMs: number): void {
    if (s.measured && rttMs <= s.ewmaMs) return;
    s.ewmaMs = rttMs;
    s.ewmaAt = this.clock.now();
    s.measured = true;
  }

  /** Takes `s` out of service until `until`. */
  eject(s: EndpointState, until: number): void {
    if (s.ejectedUntil === 0) this.ejected++;
    s.ejectedUntil = until;
    s.probing = false;
  }

  /** Puts `s` back into service. */
  restore(s: EndpointState): void {
    if (s.ejectedUntil !== 0) this.ejected--;
    s.ejectedUntil = 0;
    s.probing = false;
    s.returnedAt = this.clock.now();
    // Latency seen before or while ejected (a fresh connection for the probe) says
    // little now: measure the endpoint afresh, so it is not starved on return.
    s.measured = false;
  }

  /** Puts every endpoint back, e.g. when the breaker policy is removed. */
  restoreAll(): void {
    for (const s of this.states) if (s.ejectedUntil !== 0) this.restore(s);
  }

  /** A probe ended without an outcome (the client went away): the next request probes again. */
  abandonProbe(s: EndpointState): void {
    s.probing = false;
  }

  private dueProbe(): EndpointState | undefined {
    const now = this.clock.now();
    for (const s of this.states) {
      if (s.ejectedUntil !== 0 && !s.probing && s.ejectedUntil <= now) {
        s.probing = true;
        return s;
      }
    }
    return undefined;
  }

  private nthAvailable(n: number, not: EndpointState | undefined): EndpointState {
    let seen = 0;
    for (const s of this.states) {
      if (s.ejectedUntil !== 0 || s === not) continue;
      if (seen++ === n) return s;
    }
    throw new Error('balancer: fewer endpoints in service than counted');
  }
}
