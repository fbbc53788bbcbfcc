// Scrapes every known proxy's /metrics on an interval and keeps a sliding
// window of scrapes per proxy, from which view.ts computes the dashboard.
// After each round it offers the scrapes to the history store (history.ts),
// which keeps a point every 10 s for 15 minutes. With `idleAfterMs`, the
// live cadence runs only while someone reads the view (or its history); in
// between, with `idleIntervalMs`, rounds go on at that slower cadence (the
// history's, as a Prometheus scrape interval), so the last 15 minutes are
// there when someone opens the dashboard during an incident; without it,
// scraping stops until the next read. A round is paced: at most
// SCRAPE_CONCURRENCY scrapes in flight and at most maxScrapesPerSecond
// started, so that with thousands of proxies a round is spread over seconds
// (2,000 proxies: 20 s at the default 100 a second) instead of thousands of
// fetches and parses landing on the control plane's one thread at once,
// which would delay the discovery stream's pushes behind them.
import { parseMetrics } from '../../lib/prom-text.js';
import type { Logger } from '../../lib/log.js';
import { systemScheduler, type Clock } from '../../lib/scheduler.js';
import { HistoryStore, type HistoryOptions, type HistoryView } from './history.js';
import { buildMeshView, type MeshView, type Scrape, type ScrapeTarget, type TargetState } from './view.js';

/** Scrapes of one round in flight at once. */
export const SCRAPE_CONCURRENCY = 8;
/** Scrapes a round starts per second, at most (default of maxScrapesPerSecond). */
export const MAX_SCRAPES_PER_SECOND = 100;

export interface MeshObserverOptions {
  /** The proxies to scrape, asked before every round. */
  targets: () => readonly ScrapeTarget[];
  log: Logger;
  /** Between two rounds (default 2 s). */
  intervalMs?: number;
  /** Rates are measured over this much history (default 10 s). */
  windowMs?: number;
  /** Per scrape (default 1.5 s). */
  timeoutMs?: number;
  /** Leave the live cadence after this long without a read of the view; undefined: always scrape at intervalMs. */
  idleAfterMs?: number;
  /** With idleAfterMs: the cadence while nobody reads (undefined: none, scraping stops until a read). */
  idleIntervalMs?: number;
  /** Scrapes a round starts per second, at most (default MAX_SCRAPES_PER_SECOND). */
  maxScrapesPerSecond?: number;
  /** The history's clock, interval and size (defaults: wall clock, 10 s, 90 points). */
  history?: Partial<HistoryOptions>;
}

interface State {
  target: ScrapeTarget;
  scrapes: Scrape[];
  error?: string;
}

export class MeshObserver {
  private readonly states = new Map<string, State>();
  private readonly intervalMs: number;
  private readonly windowMs: number;
  private readonly timeoutMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** A round is in flight or scheduled. */
  private running = false;
  private lastRead = Date.now();
  private closed = false;
  private readonly history: HistoryStore;

  constructor(private readonly opts: MeshObserverOptions) {
    this.intervalMs = opts.intervalMs ?? 2000;
    this.windowMs = opts.windowMs ?? 10_000;
    this.timeoutMs = opts.timeoutMs ?? 1500;
    const clock: Clock = opts.history?.clock ?? systemScheduler;
    this.history = new HistoryStore({ ...opts.history, clock });
  }

  /** Starts the scrape loop (no-op when running or closed). */
  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    const round = (): void => {
      this.timer = undefined;
      const idle = this.opts.idleAfterMs !== undefined && Date.now() - this.lastRead > this.opts.idleAfterMs;
      if (this.closed || (idle && this.opts.idleIntervalMs === undefined)) {
        this.running = false;
        this.opts.log.debug('scraping paused: nobody reads the mesh view');
        return;
      }
      void this.scrapeAll().finally(() => {
        if (this.closed) return;
        const idleNext = this.opts.idleAfterMs !== undefined && Date.now() - this.lastRead > this.opts.idleAfterMs;
        this.timer = setTimeout(round, idleNext ? this.opts.idleIntervalMs! : this.intervalMs).unref();
      });
    };
    round();
  }

  /** The mesh now; a read restarts a paused loop, or brings a slow one back to the live cadence. */
  view(): MeshView {
    this.read();
    return buildMeshView([...this.states.values()] as TargetState[], Date.now());
  }

  /** The last 15 minutes, of every series or of one workload's (`namespace/name`); a read restarts a paused loop. */
  historyView(workload?: string): HistoryView {
    this.read();
    return this.history.view(workload);
  }

  private read(): void {
    const wasIdle = this.opts.idleAfterMs !== undefined && Date.now() - this.lastRead > this.opts.idleAfterMs;
    this.lastRead = Date.now();
    if (this.running && wasIdle && this.timer !== undefined) {
      // Waiting out the slow cadence: the next round comes now.
      clearTimeout(this.timer);
      this.timer = undefined;
      this.running = false;
    }
    this.start();
  }

  /** One round: every target scraped once, paced (SCRAPE_CONCURRENCY in flight, maxScrapesPerSecond started), then offered to the history. */
  async scrapeAll(): Promise<void> {
    const targets = this.opts.targets();
    const urls = new Set(targets.map((t) => t.url));
    for (const url of this.states.keys()) if (!urls.has(url)) this.states.delete(url);
    const perSecond = this.opts.maxScrapesPerSecond ?? MAX_SCRAPES_PER_SECOND;
    const start = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < targets.length && !this.closed) {
        const i = next++;
        // The i-th scrape of the round starts no sooner than i / perSecond seconds after its start.
        const wait = start + (i * 1000) / perSecond - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait).unref());
        await this.scrape(targets[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(SCRAPE_CONCURRENCY, targets.length) }, worker));
    this.history.offer([...this.states.values()]);
  }

  private async scrape(target: ScrapeTarget): Promise<void> {
    let state = this.states.get(target.url);
    if (!state) this.states.set(target.url, (state = { target, scrapes: [] }));
    state.target = target;
    try {
      const res = await fetch(target.url, { signal: AbortSignal.timeout(this.timeoutMs) });
      const text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const at = Date.now();
      state.scrapes.push({ at, samples: parseMetrics(text) });
      // Keep one scrape at or before the window's start, so the window is covered whole.
      while (state.scrapes.length > 2 && state.scrapes[1]!.at <= at - this.windowMs) state.scrapes.shift();
      delete state.error;
    } catch (e) {
      const cause = (e as Error & { cause?: Error }).cause;
      state.error = `${(e as Error).message}${cause ? `: ${cause.message}` : ''}`;
      this.opts.log.debug('scrape failed', { url: target.url, error: state.error });
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
