// A list+watch cache of one Kubernetes resource that keeps itself alive:
// client-node's ListWatch lists, then watches from the list's
// resourceVersion, re-watches when the server ends a watch, and relists on
// 410 Gone; but after any other error (connection refused, 5xx, a list that
// fails) it stops for good. This wrapper restarts it with capped, jittered
// backoff, logs each error and counts it in
// tsmesh_control_watch_errors_total{resource}.
//
// Watches carry timeoutSeconds (5 to 10 minutes, random as in client-go), so
// the server ends each one and a connection that died silently is replaced;
// and allowWatchBookmarks, so the resourceVersion stays recent and a
// re-watch seldom needs a relist.
//
// A list or a watch request that never gets an answer would stall the cache
// for good: ListWatch sets no client-side timeout on either, and a pending
// request is no error. So a watchdog restarts the informer when it has made
// no progress (a list begun, an event, an error) for longer than the longest
// watch timeout and a margin: a healthy watch ends and starts again before
// that.
//
// Lists are read in pages of LIST_PAGE objects (as client-go's pager does),
// and each object, listed or watched, may pass through `keep` before it is
// cached (kubernetes-fields.ts keeps what the control plane reads): a list
// of the whole cluster is then never held whole, only the cache and one page.
// A page whose continue token has expired (410) fails the list, and the
// informer lists again from the start after its backoff.
import { ApiException, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../lib/log.js';
import { family, type MetricName } from '../../contract/metrics.js';

export const WATCH_ERRORS_METRIC = 'tsmesh_control_watch_errors_total' satisfies MetricName;

/** tsmesh_control_watch_errors_total{resource}, created once per registry. */
export function watchErrorsCounter(registry: Registry): Counter<'resource'> {
  const existing = registry.getSingleMetric(WATCH_ERRORS_METRIC);
  if (existing) return existing as Counter<'resource'>;
  return new Counter({
    ...family(WATCH_ERRORS_METRIC),
    registers: [registry],
  });
}

/** Objects a list page asks for. */
export const LIST_PAGE = 500;

/** One page of a list: the client's list parameters of that name. */
export interface ListPage {
  limit: number;
  _continue?: string;
}

export interface ResourceWatch<T extends KubernetesObject, Raw extends KubernetesObject = T> {
  /** Label of the metric and of log lines, e.g. "services". */
  resource: string;
  /** Collection path, e.g. /api/v1/services or /apis/tsmesh.io/v1alpha1/trafficpolicies. */
  path: string;
  /** One page of the list (the client's list call with these parameters). */
  list: (page: ListPage) => Promise<KubernetesListObject<Raw>>;
  /** What the cache keeps of each object, listed or watched; default the object as it is. */
  keep?: (obj: Raw) => T;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * The resource may not be served (a CustomResourceDefinition not installed
   * yet): a 404 counts as an empty list, so the cache is synced and empty, and
   * the watch is retried with backoff until the resource appears.
   */
  optional?: boolean;
}

export interface InformerOptions {
  log: Logger;
  errors: Counter<'resource'>;
  /** Called after every change of the cache (add, update, delete, relist). */
  onChange: () => void;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Bounds of the random server-side watch timeout, in seconds. */
  watchTimeoutSeconds?: [number, number];
  /** How long past the longest watch timeout the watchdog waits before it restarts a silent informer; default 60 s. */
  stallMarginMs?: number;
  /** Objects a list page asks for; default LIST_PAGE. */
  listPageSize?: number;
}

function statusOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const e = err as { statusCode?: unknown; code?: unknown } | undefined;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

function messageOf(text: string): string {
  try {
    return (JSON.parse(text) as { message?: string }).message ?? text;
  } catch {
    return text;
  }
}

function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as { message?: string } | string | undefined;
    const msg = typeof body === 'string' ? messageOf(body) : body?.message;
    return `HTTP ${err.code}${msg ? `: ${msg}` : ''}`;
  }
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** A Watch whose added, modified and deleted objects pass through `keep` before ListWatch sees them. */
class KeepingWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly keep: (obj: never) => KubernetesObject,
  ) {
    super(kc);
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ERROR carries a Status, BOOKMARK only a resourceVersion: both go on as they are.
    const kept = (phase: string, obj: unknown, watchObj?: unknown): void =>
      callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? this.keep(obj as never) : obj, watchObj);
    return super.watch(path, queryParams, kept, done);
  }
}

export class ResilientInformer<T extends KubernetesObject, Raw extends KubernetesObject = T> {
  private readonly lw: ListWatch<T>;
  private stopped = true;
  private hasSynced = false;
  private delay: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private notServedLogged = false;
  private readonly initialMs: number;
  private readonly maxMs: number;
  /** When the informer last showed progress; the watchdog restarts it when this is older than stallMs. */
  private lastProgress = 0;
  private readonly stallMs: number;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    kc: KubeConfig,
    private readonly res: ResourceWatch<T, Raw>,
    private readonly opts: InformerOptions,
  ) {
    this.initialMs = opts.backoffInitialMs ?? 500;
    this.maxMs = opts.backoffMaxMs ?? 30_000;
    this.delay = this.initialMs;
    const [lo, hi] = opts.watchTimeoutSeconds ?? [300, 600];
    const timeout = Math.floor(lo + Math.random() * (hi - lo));
    this.stallMs = hi * 1000 + (opts.stallMarginMs ?? 60_000);
    // Watch appends its own query (watch, resourceVersion, selectors) to this path.
    const watchPath = `${res.path}?allowWatchBookmarks=true&timeoutSeconds=${timeout}`;
    const watch = res.keep ? new KeepingWatch(kc, res.keep as (obj: never) => KubernetesObject) : new Watch(kc);
    this.lw = new ListWatch<T>(watchPath, watch, () => this.fetch(), false, res.labelSelector, res.fieldSelector);
    const changed = (): void => {
      this.lastProgress = Date.now();
      opts.onChange();
    };
    this.lw.on('add', changed);
    this.lw.on('update', changed);
    this.lw.on('delete', changed);
    // Each list-and-watch round (the first, and every re-watch after a watch ends) begins with connect.
    this.lw.on('connect', () => (this.lastProgress = Date.now()));
    this.lw.on('error', (err) => this.failed(err));
  }

  get resource(): string {
    return this.res.resource;
  }

  /** True once a list has succeeded (the cache reflects the server at some point). */
  get synced(): boolean {
    return this.hasSynced;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  /** Cached objects, of one namespace or of all. */
  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace);
  }

  private async fetch(): Promise<KubernetesListObject<T>> {
    let out: KubernetesListObject<T>;
    try {
      out = await this.listPages();
      this.notServedLogged = false;
    } catch (err) {
      if (!(this.res.optional && statusOf(err) === 404)) throw err;
      if (!this.notServedLogged) {
        this.opts.log.warn('resource not served; treating it as empty until it is (is its CustomResourceDefinition installed?)', { resource: this.res.resource });
        this.notServedLogged = true;
      }
      out = { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [] };
    }
    const first = !this.hasSynced;
    this.hasSynced = true;
    // ListWatch fires add/update/delete for the list's differences; the first list may be empty.
    if (first) setImmediate(() => this.opts.onChange());
    return out;
  }

  /** The whole list, page after page, each object through `keep`; the list's resourceVersion is its first page's (a paged list is one snapshot). */
  private async listPages(): Promise<KubernetesListObject<T>> {
    const keep = this.res.keep ?? ((o: Raw) => o as unknown as T);
    const items: T[] = [];
    const limit = this.opts.listPageSize ?? LIST_PAGE;
    let page = await this.res.list({ limit });
    const { resourceVersion } = page.metadata ?? {};
    for (;;) {
      for (const o of page.items) items.push(keep(o));
      // Typed lists carry it as _continue; custom objects' lists are JSON as the server sent it.
      const next = page.metadata?._continue ?? (page.metadata as { continue?: string } | undefined)?.continue;
      if (!next) break;
      page = await this.res.list({ limit, _continue: next });
    }
    return { apiVersion: page.apiVersion ?? 'v1', kind: page.kind ?? 'List', metadata: { resourceVersion: resourceVersion ?? '' }, items };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.run();
    this.watchdog = setInterval(() => this.checkProgress(), Math.max(1000, Math.floor(this.stallMs / 4)));
    this.watchdog.unref();
  }

  private run(): void {
    if (this.stopped) return;
    this.startedAt = Date.now();
    this.lastProgress = Date.now();
    this.lw.start().catch((err: unknown) => this.failed(err));
  }

  /** No list, event or error for stallMs: a request hangs. Restarting abandons it (it is aborted if it was a watch already answered). */
  private checkProgress(): void {
    if (this.stopped || this.restartTimer || Date.now() - this.lastProgress <= this.stallMs) return;
    void this.lw.stop();
    this.failed(new Error(`no list, watch event or error for ${Math.round((Date.now() - this.lastProgress) / 1000)} s; restarting the list and watch`));
  }

  private failed(err: unknown): void {
    if (this.stopped) return; // stop() aborts the watch, which reports an AbortError
    if (this.restartTimer) return; // already scheduled
    const status = statusOf(err);
    const quietly = this.res.optional && status === 404;
    this.opts.errors.inc({ resource: this.res.resource });
    // A watch that ran for a while before failing starts the backoff afresh.
    if (Date.now() - this.startedAt > this.maxMs) this.delay = this.initialMs;
    const wait = Math.round(this.delay * (0.8 + Math.random() * 0.4));
    this.delay = Math.min(this.delay * 2, this.maxMs);
    const fields = { resource: this.res.resource, error: describeError(err), ...(status ? { status } : {}), retryInMs: wait };
    if (quietly) this.opts.log.debug('watch failed; retrying', fields);
    else this.opts.log.warn('watch failed; retrying', fields);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.run();
    }, wait);
    this.restartTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    void this.lw.stop();
  }
}
