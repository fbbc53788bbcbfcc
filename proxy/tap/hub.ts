// The proxy's tap hub: the requests of this sidecar, told live to the
// control plane while it taps (`tsmesh tap`). The control plane opens a
// connection over mesh mTLS with ALPN tsmesh/tap (inbound/listener.ts lets
// only its identity through), writes one line, the tap's filters as JSON, and
// reads events back, one JSON object a line, until either end closes.
//
// The telemetry layer of every stack (http/telemetry.ts) asks `active` (one
// boolean) per request; only while a tap is open does it ask `start`, which
// matches the request against each tap's filters and takes a token of the
// tap's rate: past the rate, or while the tap's connection has more than
// `bufferBytes` unsent, an event is dropped and counted
// (tsmesh_tap_events_dropped_total), never waited for. Header values leave
// the proxy only for a tap that asks for them (showHeaders; the control plane
// asks only for a caller granted it); otherwise only their names do.
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from '../../lib/prom.js';
import type { Logger } from '../../lib/log.js';
import { family, type LabelOf } from '../../contract/metrics.js';
import { TAP_DEFAULT_MAX_RPS, TAP_MAX_MAX_RPS, TAP_REDACTED, type TapFilter } from '../../contract/tap.js';
import type { ProxyRequest, ProxyResponse } from '../http/types.js';
import type { RequestFacts } from '../telemetry/tracer.js';

/** Unsent bytes a tap's connection may hold before its events are dropped. */
const DEFAULT_BUFFER_BYTES = 256 * 1024;
/** The filter line must arrive within this, and be at most this long. */
const SPEC_TIMEOUT_MS = 5000;
const SPEC_MAX_BYTES = 8192;

export interface TapCounters {
  sent: Counter;
  dropped: Counter<LabelOf<'tsmesh_tap_events_dropped_total'>>;
}

/** The tap's families in `registry`: those already there (sidecars that share their metrics), else new ones. */
export function createTapCounters(registry: Registry): TapCounters {
  const counter = <N extends 'tsmesh_tap_events_total' | 'tsmesh_tap_events_dropped_total'>(name: N): Counter<LabelOf<N>> =>
    (registry.getSingleMetric(name) as Counter<LabelOf<N>> | undefined) ?? new Counter({ ...family(name), registers: [registry] });
  return { sent: counter('tsmesh_tap_events_total'), dropped: counter('tsmesh_tap_events_dropped_total') };
}

export interface TapHubOptions {
  counters?: TapCounters;
  /** This pod's name, for a tap of one pod; undefined where it is not known. */
  podName?: string | undefined;
  bufferBytes?: number;
  /** Monotonic ms (tests: virtual time). */
  now?: () => number;
}

/** What the telemetry layer knows of a request before it goes on (http/telemetry.ts TelemetryLabels). */
export interface TapLabels {
  direction: 'inbound' | 'outbound';
  sourceIdentity: () => string;
  destinationIdentity?: () => string;
}

type Headers = Record<string, string | string[] | undefined>;

/** One open tap: its filters, its token bucket, its connection. */
class Tap {
  private tokens: number;
  private refilledAt: number;

  constructor(
    readonly filter: TapFilter,
    private readonly socket: Duplex,
    private readonly hub: TapHub,
    /** Ends the tap: its connection closed, the hub forgets it. */
    readonly close: () => void,
  ) {
    this.tokens = filter.maxRps;
    this.refilledAt = hub.now();
  }

  /** The filters known before the response: direction, method, path prefix. */
  matchesRequest(req: ProxyRequest, direction: string): boolean {
    const f = this.filter;
    return (f.direction === undefined || f.direction === direction) && (f.method === undefined || f.method === req.method) && (f.path === undefined || req.path.startsWith(f.path));
  }

  /** Whether the filters that need the response (status, and identity when the callee answered it) hold. */
  matchesResponse(status: number, source: string, destination: string): boolean {
    const f = this.filter;
    if (f.identity !== undefined && f.identity !== source && f.identity !== destination) return false;
    if (f.status === undefined) return true;
    return f.status < 10 ? Math.floor(status / 100) === f.status : status === f.status;
  }

  /** Takes one token of the rate; false past it. */
  take(): boolean {
    const now = this.hub.now();
    const rate = this.filter.maxRps;
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) * rate) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  send(event: object): void {
    if (this.socket.destroyed) return;
    if (this.socket.writableLength > this.hub.bufferBytes) {
      this.hub.counters?.dropped.inc({ reason: 'buffer-full' });
      return;
    }
    this.socket.write(`${JSON.stringify(event)}\n`);
    this.hub.counters?.sent.inc();
  }

  headers(h: Headers | ProxyRequest['headers']): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(h)) {
      if (value === undefined) continue;
      out[name] = this.filter.showHeaders ? (Array.isArray(value) ? value.join(', ') : String(value)) : TAP_REDACTED;
    }
    return out;
  }
}

/** A request some tap took: it tells of the response and of the end. */
export class TapObservation {
  /** Taps whose request event waits for the response (status or callee filters). */
  private readonly held: Tap[] = [];
  private readonly told: Tap[] = [];
  private readonly id: string;
  private source = '';

  constructor(
    private readonly req: ProxyRequest,
    private readonly labels: TapLabels,
    taps: Tap[],
    hub: TapHub,
  ) {
    this.id = hub.nextId();
    this.source = labels.sourceIdentity();
    const destination = labels.destinationIdentity?.() ?? '';
    for (const tap of taps) {
      const f = tap.filter;
      const identityHolds = f.identity === undefined || f.identity === this.source || f.identity === destination;
      // Inbound both ends are known now; outbound the callee is known once it answers, a status only then.
      if (!identityHolds && labels.destinationIdentity !== undefined) continue;
      if (f.status !== undefined || !identityHolds) this.held.push(tap);
      else this.tellRequest(tap, destination);
    }
  }

  private tellRequest(tap: Tap, destination: string): void {
    const req = this.req;
    tap.send({
      type: 'req',
      id: this.id,
      direction: this.labels.direction,
      source: this.source,
      destination,
      method: req.method,
      authority: String(req.headers.host ?? req.headers[':authority'] ?? ''),
      path: req.path,
      headers: tap.headers(req.headers),
    });
    this.told.push(tap);
  }

  /** The response head is going back. */
  response(res: ProxyResponse): void {
    const destination = this.labels.destinationIdentity?.() ?? res.meta?.peerIdentity ?? '';
    for (const tap of this.held) if (tap.matchesResponse(res.status, this.source, destination)) this.tellRequest(tap, destination);
    this.held.length = 0;
    const latencyMs = round(performance.now() - this.req.startedAt);
    for (const tap of this.told) tap.send({ type: 'rsp', id: this.id, status: res.status, latencyMs, headers: tap.headers(res.headers) });
  }

  /** The exchange is over: the response has gone, or the request failed. */
  end(f: RequestFacts, durationMs: number, requestBytes: number, responseBytes: number): void {
    // A request that failed before any response: a tap waiting for its status sees status 0.
    for (const tap of this.held) if (tap.matchesResponse(f.status, this.source, f.destinationIdentity)) this.tellRequest(tap, f.destinationIdentity);
    this.held.length = 0;
    const event = {
      type: 'end',
      id: this.id,
      durationMs: round(durationMs),
      requestBytes,
      responseBytes,
      ...(f.grpcStatus !== undefined ? { grpcStatus: f.grpcStatus } : {}),
      ...(f.error !== undefined ? { error: f.error } : {}),
    };
    for (const tap of this.told) tap.send(event);
  }
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export class TapHub {
  /** True while a tap is open: the one thing the request path reads when nobody taps. */
  active = false;
  readonly bufferBytes: number;
  readonly counters: TapCounters | undefined;
  readonly now: () => number;
  private readonly taps = new Set<Tap>();
  private seq = 0;

  constructor(private readonly opts: TapHubOptions = {}) {
    this.bufferBytes = opts.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    this.counters = opts.counters;
    this.now = opts.now ?? (() => performance.now());
  }

  get tapCount(): number {
    return this.taps.size;
  }

  nextId(): string {
    return String(++this.seq);
  }

  /** The taps that take this request (each spends a token of its rate); undefined when none. */
  start(req: ProxyRequest, labels: TapLabels): TapObservation | undefined {
    let taking: Tap[] | undefined;
    for (const tap of this.taps) {
      if (!tap.matchesRequest(req, labels.direction)) continue;
      if (!tap.take()) {
        this.counters?.dropped.inc({ reason: 'rate-limit' });
        continue;
      }
      (taking ??= []).push(tap);
    }
    return taking ? new TapObservation(req, labels, taking, this) : undefined;
  }

  /**
   * Serves a tap on a connection the control plane opened: reads its filter
   * line, then sends events until either end closes.
   */
  serve(socket: Duplex, log: Logger): void {
    let buffered = '';
    const fail = (message: string): void => {
      log.warn('tap refused', { error: message });
      socket.end(`${JSON.stringify({ type: 'error', message })}\n`);
    };
    const timer = setTimeout(() => fail(`no tap filter line within ${SPEC_TIMEOUT_MS} ms`), SPEC_TIMEOUT_MS);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) {
        if (buffered.length > SPEC_MAX_BYTES) {
          socket.off('data', onData);
          clearTimeout(timer);
          fail(`the tap filter line is longer than ${SPEC_MAX_BYTES} bytes`);
        }
        return;
      }
      socket.off('data', onData);
      clearTimeout(timer);
      let filter: TapFilter;
      try {
        filter = parseTapFilter(JSON.parse(buffered.slice(0, nl)));
      } catch (e) {
        fail(`bad tap filter: ${(e as Error).message}`);
        return;
      }
      if (filter.pod !== undefined && filter.pod !== this.opts.podName) {
        socket.end();
        return;
      }
      const close = (): void => {
        if (!this.taps.delete(tap)) return;
        this.active = this.taps.size > 0;
        log.info('tap closed', { taps: this.taps.size });
        socket.destroy();
      };
      const tap = new Tap(filter, socket, this, close);
      this.taps.add(tap);
      this.active = true;
      log.info('tap opened', { taps: this.taps.size, filter });
      // Nothing more is read; the end of the control plane's side ends the tap.
      socket.resume();
      socket.once('end', close);
      socket.once('close', close);
      socket.on('error', close);
    };
    socket.on('data', onData);
    socket.on('error', () => clearTimeout(timer));
  }

  /** Ends every tap (the proxy is draining). */
  closeAll(): void {
    for (const tap of [...this.taps]) tap.close();
  }
}

/** A filter line as the control plane sends it (contract/tap.ts TapFilter), checked. */
export function parseTapFilter(raw: unknown): TapFilter {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('expected a JSON object');
  const o = raw as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new Error(`${k} must be a non-empty string`);
    return v;
  };
  const direction = str('direction');
  if (direction !== undefined && direction !== 'inbound' && direction !== 'outbound') throw new Error('direction must be inbound or outbound');
  const status = o['status'];
  if (status !== undefined && (typeof status !== 'number' || !Number.isInteger(status) || !(status >= 1 && status <= 5) && !(status >= 100 && status <= 599)))
    throw new Error('status must be a code 100-599 or a class 1-5');
  const maxRps = o['maxRps'] ?? TAP_DEFAULT_MAX_RPS;
  if (typeof maxRps !== 'number' || !(maxRps > 0 && maxRps <= TAP_MAX_MAX_RPS)) throw new Error(`maxRps must be a number above 0 and at most ${TAP_MAX_MAX_RPS}`);
  const filter: TapFilter = { maxRps, showHeaders: o['showHeaders'] === true };
  const [path, method, identity, pod] = [str('path'), str('method'), str('identity'), str('pod')];
  if (direction !== undefined) filter.direction = direction;
  if (path !== undefined) filter.path = path;
  if (method !== undefined) filter.method = method;
  if (identity !== undefined) filter.identity = identity;
  if (pod !== undefined) filter.pod = pod;
  if (status !== undefined) filter.status = status as number;
  return filter;
}
