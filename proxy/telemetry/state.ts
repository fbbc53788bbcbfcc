// The telemetry settings in force and what they need: the tracer (span
// export) while export is on, the access log's settings and writer. Every
// config sets them (the mesh's settings, then this workload's overrides);
// the layer of each stack (http/telemetry.ts) reads them per request, so a
// change applies to connections already open. The OpenTelemetry SDK is loaded on the first
// config with export on (telemetry/otel.ts), and a tracer is made anew when
// the collector changes; the one it replaces sends what it holds first.
import type { Logger } from '../../lib/log.js';
import type { AccessLogSettings, ProxyConfig, TracingSettings } from '../../contract/proxy-config.js';
import { DEFAULT_ACCESS_LOG, DEFAULT_TRACING } from '../../contract/proxy-config.js';
import { AccessLogWriter } from './access-log.js';
import type { SpanCounters } from './otel.js';
import type { ProxyTracer } from './tracer.js';
import { TapHub } from '../tap/hub.js';

/** How long a tracer that is let go of may take to send what it holds. */
const SHUTDOWN_MS = 5000;

export interface TelemetryOptions {
  log: Logger;
  counters: SpanCounters;
  /** Randomness of the sampling of new traces (tests replace it). */
  random?: () => number;
  /** Who this proxy is, for the spans' resource: read when a tracer is made. */
  workload: () => { serviceName: string; namespace?: string | undefined; podName?: string | undefined };
  /** Passed to the tracer (tests: a short delay, a small queue). */
  tracerTuning?: { maxQueue?: number; maxBatch?: number; delayMs?: number; exportTimeoutMs?: number };
  /** Where access log lines go (default the process's stdout). */
  accessLogSink?: (text: string) => void;
  /** The tap hub the request path tells while the control plane taps (default one that counts nothing). */
  tap?: TapHub;
}

/** The tracing settings of `config`: the mesh's, with this workload's overrides laid over them. */
export function effectiveTracing(config: ProxyConfig): TracingSettings {
  return { ...DEFAULT_TRACING, ...config.mesh.tracing, ...config.telemetry?.tracing };
}

/** The access log settings of `config`: the mesh's, with this workload's overrides laid over them. */
export function effectiveAccessLog(config: ProxyConfig): AccessLogSettings {
  return { ...DEFAULT_ACCESS_LOG, ...config.mesh.accessLog, ...config.telemetry?.accessLog };
}

export class Telemetry {
  /** The tracer while span export is on and loaded; undefined otherwise. */
  tracer: ProxyTracer | undefined;
  /** The share of new traces sampled. */
  sampling = 0;
  /** The access log's settings while it is on (mode other than off). */
  accessLog: AccessLogSettings | undefined;
  readonly accessLogWriter: AccessLogWriter;
  readonly random: () => number;
  /** Live requests for `tsmesh tap` (tap/hub.ts). */
  readonly tap: TapHub;
  private collector: string | undefined;
  /** Bumped by every change of tracer, so a load that finishes late does not win over a later config. */
  private generation = 0;
  private loading: Promise<void> = Promise.resolve();
  private complaint: string | undefined;

  constructor(private readonly opts: TelemetryOptions) {
    this.random = opts.random ?? Math.random;
    this.accessLogWriter = new AccessLogWriter(opts.accessLogSink);
    this.tap = opts.tap ?? new TapHub();
  }

  /** Takes the settings of a config into use. */
  apply(config: ProxyConfig): void {
    const log = effectiveAccessLog(config);
    if (log.mode === 'off' && this.accessLog !== undefined) this.opts.log.info('access log off');
    else if (log.mode !== 'off' && JSON.stringify(log) !== JSON.stringify(this.accessLog)) this.opts.log.info('access log on', { ...log });
    this.accessLog = log.mode === 'off' ? undefined : log;
    this.applyTracing(config);
  }

  private applyTracing(config: ProxyConfig): void {
    const t = effectiveTracing(config);
    if (t.export && t.collector === undefined) {
      // The validator refuses this in the mesh's settings; an override can still turn export on without a collector.
      const complaint = 'span export is on for this workload but no collector is set (tracing.collector in tsmesh-config or the mesh file); exporting nothing';
      if (this.complaint !== complaint) this.opts.log.error(complaint);
      this.complaint = complaint;
      this.stopExport();
      return;
    }
    this.complaint = undefined;
    if (!t.export) {
      this.stopExport();
      return;
    }
    this.sampling = t.sampling;
    if (t.collector === this.collector) return;
    this.collector = t.collector;
    const generation = ++this.generation;
    const collector = t.collector!;
    this.loading = import('./otel.js')
      .then(({ createOtelTracer }) => {
        if (generation !== this.generation) return;
        const old = this.tracer;
        this.tracer = createOtelTracer({ collector, counters: this.opts.counters, ...this.opts.workload(), ...this.opts.tracerTuning });
        this.opts.log.info('span export on', { collector, sampling: this.sampling });
        void old?.shutdown(SHUTDOWN_MS);
      })
      .catch((e: unknown) => this.opts.log.error('span export could not start; exporting nothing', { error: (e as Error).message }));
  }

  /** Resolves once the tracer the last config asked for is in use (tests, and a proxy that drains). */
  settled(): Promise<void> {
    return this.loading;
  }

  private stopExport(): void {
    this.generation++;
    this.sampling = 0;
    this.collector = undefined;
    const old = this.tracer;
    this.tracer = undefined;
    if (old) {
      this.opts.log.info('span export off');
      void old.shutdown(SHUTDOWN_MS);
    }
  }

  /** Sends the spans held (at most `timeoutMs`) and stops exporting. */
  async close(timeoutMs = SHUTDOWN_MS): Promise<void> {
    this.accessLogWriter.flush();
    await this.loading;
    this.generation++;
    const old = this.tracer;
    this.tracer = undefined;
    await old?.shutdown(timeoutMs);
  }
}
