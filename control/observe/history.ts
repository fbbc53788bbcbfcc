// The dashboard's memory: the last 15 minutes of the mesh in the control
// plane, no Prometheus needed. Every `intervalMs` (10 s) the store takes the
// latest scrape of each proxy, computes the mesh view between it and the
// scrape it took the time before (buildMeshView: counter increases, a reset
// counted from zero as Prometheus' increase() does), and appends one point per
// workload and per edge to a ring of `points` (90) entries.
//
// Memory is bounded: at most `maxSeries` (1,000) series of `points` points
// each; an edge's point is seven numbers, 185 bytes on the heap as measured
// (1,000 full edge series took 16.6 MB), so the rings hold at most about
// 17 MB, and a mesh of 100 workloads and 300 edges about 7 MB. A series
// that got no point for a whole ring's span is dropped; past `maxSeries` new
// series are not kept (and `droppedSeries` says how many).
import type { Clock } from '../../lib/scheduler.js';
import { buildMeshView, type EdgeView, type Scrape, type TargetState, type WorkloadView } from './view.js';

/** One sample of a workload: what its pods answered over the interval before `at`. */
export interface WorkloadPoint {
  /** Milliseconds since the epoch (by the store's clock). */
  at: number;
  rps: number;
  successRate: number | null;
  p99Ms: number | null;
}

/** One sample of an edge: what the caller saw, what the backends answered, what the caller's proxy did. */
export interface EdgePoint extends WorkloadPoint {
  backendSuccessRate: number | null;
  /** Retries per second the caller's proxy made. */
  retriesPerSecond: number;
  mtlsShare: number | null;
}

/** A fixed-size ring: pushing onto a full one drops the oldest entry. */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`a ring holds at least one entry, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.items[(this.start + this.size) % this.capacity] = item;
    if (this.size < this.capacity) this.size += 1;
    else this.start = (this.start + 1) % this.capacity;
  }

  get length(): number {
    return this.size;
  }

  /** Oldest first. */
  toArray(): T[] {
    return Array.from({ length: this.size }, (_, i) => this.items[(this.start + i) % this.capacity]!);
  }

  last(): T | undefined {
    return this.size === 0 ? undefined : this.items[(this.start + this.size - 1) % this.capacity];
  }
}

/** How often the history takes a point when its options name no interval. */
export const HISTORY_INTERVAL_MS = 10_000;

export interface HistoryOptions {
  clock: Clock;
  /** Between two points (default 10 s). */
  intervalMs?: number;
  /** Points per series (default 90: 15 minutes at 10 s). */
  points?: number;
  /** Series kept at most (default 1,000). */
  maxSeries?: number;
}

/** What /api/v1/history serves. */
export interface HistoryView {
  intervalSeconds: number;
  /** Points a series holds at most. */
  points: number;
  /** By `namespace/name`, oldest first. */
  workloads: Record<string, WorkloadPoint[]>;
  /** By `namespace/source destination` (as the page names edges: `demo/web -> api.demo`), oldest first. */
  edges: Record<string, EdgePoint[]>;
  /** Series that got no point at the last sample because `maxSeries` was reached. */
  droppedSeries: number;
}

export const edgeKey = (e: Pick<EdgeView, 'sourceNamespace' | 'source' | 'destination'>): string => `${e.sourceNamespace}/${e.source} -> ${e.destination}`;
export const workloadKey = (w: Pick<WorkloadView, 'namespace' | 'name'>): string => `${w.namespace}/${w.name}`;

export class HistoryStore {
  readonly intervalMs: number;
  readonly points: number;
  private readonly maxSeries: number;
  /** The scrape each proxy's last point ended at, by metrics URL. */
  private readonly checkpoints = new Map<string, Scrape>();
  private readonly workloads = new Map<string, Ring<WorkloadPoint>>();
  private readonly edges = new Map<string, Ring<EdgePoint>>();
  /** The workloads (`namespace/name`) that answered each edge, as last seen: a split's backends. */
  private readonly answeredBy = new Map<string, Set<string>>();
  private lastAt = -Infinity;
  private dropped = 0;

  constructor(private readonly opts: HistoryOptions) {
    this.intervalMs = opts.intervalMs ?? HISTORY_INTERVAL_MS;
    this.points = opts.points ?? 90;
    this.maxSeries = opts.maxSeries ?? 1000;
  }

  /** Records a point when an interval has passed since the last one; true when it did. */
  offer(states: readonly TargetState[]): boolean {
    if (this.opts.clock.now() - this.lastAt < this.intervalMs) return false;
    this.record(states);
    return true;
  }

  /**
   * One point per workload and edge from each proxy's latest scrape and the
   * one the previous point ended at (or, for a proxy new since, its oldest in
   * the observer's window). A proxy with a single scrape adds no rates yet.
   */
  record(states: readonly TargetState[]): void {
    const at = this.opts.clock.now();
    this.lastAt = at;
    const pairs: TargetState[] = [];
    const urls = new Set<string>();
    for (const { target, scrapes, error } of states) {
      const last = scrapes.at(-1);
      if (!last) continue;
      urls.add(target.url);
      const from = this.checkpoints.get(target.url) ?? scrapes[0]!;
      this.checkpoints.set(target.url, last);
      if (from.at < last.at) pairs.push({ target, scrapes: [from, last], ...(error ? { error } : {}) });
    }
    for (const url of this.checkpoints.keys()) if (!urls.has(url)) this.checkpoints.delete(url);

    const view = buildMeshView(pairs, at);
    this.dropped = 0;
    for (const w of view.workloads) this.append(this.workloads, workloadKey(w), { at, rps: w.rps, successRate: w.successRate, p99Ms: w.p99Ms });
    const seconds = view.windowSeconds;
    for (const e of view.edges) {
      if (e.split.length > 0) this.answeredBy.set(edgeKey(e), new Set(e.split.map((s) => s.workload)));
      this.append(this.edges, edgeKey(e), {
        at,
        rps: e.rps,
        successRate: e.successRate,
        p99Ms: e.p99Ms,
        backendSuccessRate: e.backend.successRate,
        retriesPerSecond: seconds > 0 ? e.resilience.retries / seconds : 0,
        mtlsShare: e.mtlsShare,
      });
    }
    this.forgetStale(at);
  }

  private append<P extends WorkloadPoint>(series: Map<string, Ring<P>>, key: string, point: P): void {
    let ring = series.get(key);
    if (!ring) {
      if (this.workloads.size + this.edges.size >= this.maxSeries) {
        this.dropped += 1;
        return;
      }
      series.set(key, (ring = new Ring<P>(this.points)));
    }
    ring.push(point);
  }

  /** Drops series whose newest point is older than a whole ring's span. */
  private forgetStale(now: number): void {
    const span = this.intervalMs * this.points;
    for (const series of [this.workloads, this.edges] as Map<string, Ring<WorkloadPoint>>[]) {
      for (const [key, ring] of series) if (now - (ring.last()?.at ?? now) > span) series.delete(key);
    }
    for (const key of this.answeredBy.keys()) if (!this.edges.has(key)) this.answeredBy.delete(key);
  }

  /** Every series, or those of one workload (`namespace/name`) and of the edges from it, to its service or answered by it. */
  view(workload?: string): HistoryView {
    const touches = (key: string): boolean => {
      if (workload === undefined) return true;
      const [source, destination] = key.split(' -> ') as [string, string];
      const [ns, name] = workload.split('/') as [string, string];
      return source === workload || destination === `${name}.${ns}` || (this.answeredBy.get(key)?.has(workload) ?? false);
    };
    const pick = <P>(series: Map<string, Ring<P>>, keep: (key: string) => boolean): Record<string, P[]> =>
      Object.fromEntries([...series].filter(([k]) => keep(k)).sort(([a], [b]) => a.localeCompare(b)).map(([k, ring]) => [k, ring.toArray()]));
    return {
      intervalSeconds: this.intervalMs / 1000,
      points: this.points,
      workloads: pick(this.workloads, (k) => workload === undefined || k === workload),
      edges: pick(this.edges, touches),
      droppedSeries: this.dropped,
    };
  }
}
