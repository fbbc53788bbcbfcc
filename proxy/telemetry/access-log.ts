// Access logs: one JSON line per request on the proxy's stdout (its own logs
// go to stderr, so a log collector reads the two apart). Lines finished in
// one turn of the event loop go out in one write.
import type { AccessLogSettings } from '../../contract/proxy-config.js';
import { isGrpcServerFailure } from '../http/grpc.js';
import type { RequestFacts } from './tracer.js';

/** What the access log adds to a request's facts. */
export interface AccessLogExtras {
  /** When the request head arrived (Unix ms). */
  startedAtMs: number;
  durationMs: number;
  /** Body bytes received from the caller and sent back to it. */
  bytesIn: number;
  bytesOut: number;
  retries: number;
  traceId: string | undefined;
  /** The path with its query, for settings that keep it. */
  fullPath: string;
}

/** Whether a request counts as an error for `errors` mode: a 5xx or none, the proxy's own answer or a cancellation, a gRPC server failure. */
export function isErrorOutcome(f: RequestFacts): boolean {
  return f.error !== undefined || f.status >= 500 || f.status === 0 || (f.grpcStatus !== undefined && isGrpcServerFailure(f.grpcStatus));
}

/** The line of one request; every field is present, null when unknown. */
export function accessLogLine(f: RequestFacts, x: AccessLogExtras, settings: AccessLogSettings): string {
  return JSON.stringify({
    time: new Date(x.startedAtMs).toISOString(),
    direction: f.direction,
    source_identity: f.sourceIdentity || null,
    destination_identity: f.destinationIdentity || null,
    destination_service: f.destinationService || null,
    route: f.route ?? null,
    method: f.method,
    authority: f.authority || null,
    path: settings.query ? x.fullPath : f.path,
    protocol: f.protocol === 'http2' ? 'HTTP/2' : 'HTTP/1.1',
    status: f.status,
    grpc_status: f.grpcStatus ?? null,
    duration_ms: Math.round(x.durationMs * 1000) / 1000,
    bytes_in: x.bytesIn,
    bytes_out: x.bytesOut,
    retries: x.retries,
    upstream: f.upstream ?? null,
    trace_id: x.traceId ?? null,
    error: f.error ?? null,
  });
}

/** Writes lines to `sink` (stdout), those of one event-loop turn together. */
export class AccessLogWriter {
  private pending: string[] = [];

  constructor(private readonly sink: (text: string) => void = (text) => void process.stdout.write(text)) {}

  write(line: string): void {
    if (this.pending.push(line) === 1) setImmediate(() => this.flush());
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const text = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.sink(text);
  }
}
