// A kubelet gRPC probe, run by the proxy: grpc.health.v1.Health/Check over
// h2c to the app on loopback, as kubelet's prober calls it (no TLS, the
// probe's service name, its timeout as the call's deadline). Success is a
// SERVING answer; anything else fails with kubelet's words for it. The two
// messages are small enough to encode by hand:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3
import type { IncomingHttpHeaders } from 'node:http2';
import { formatGrpcTimeout, decodeGrpcMessage, parseGrpcStatus } from '../http/grpc.js';
import { loadHttp2, NGHTTP2_FLAG_END_STREAM } from '../http/h2-module.js';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;
const GRPC_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;

/** A HealthCheckRequest for `service` as one gRPC message (5-byte prefix, then the protobuf). */
export function healthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const field = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const frame = Buffer.alloc(5 + field.length);
  frame.writeUInt32BE(field.length, 1);
  field.copy(frame, 5);
  return frame;
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v >= 0x80) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** The ServingStatus of a HealthCheckResponse message (its gRPC frames as received); undefined when it is not one. */
export function servingStatusOf(frames: Buffer): number | undefined {
  if (frames.length < 5 || frames[0] !== 0) return undefined;
  const length = frames.readUInt32BE(1);
  if (frames.length < 5 + length) return undefined;
  const message = frames.subarray(5, 5 + length);
  let status = 0;
  for (let i = 0; i < message.length; ) {
    const key = message[i++]!;
    const wire = key & 7;
    let value = 0;
    if (wire === 0) {
      for (let shift = 0; i < message.length; shift += 7) {
        const b = message[i++]!;
        value += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) break;
      }
      if (key >> 3 === 1) status = value;
    } else if (wire === 2) {
      let len = 0;
      for (let shift = 0; i < message.length; shift += 7) {
        const b = message[i++]!;
        len += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) break;
      }
      i += len;
    } else return undefined;
  }
  return status;
}

export interface GrpcProbeOutcome {
  ok: boolean;
  /** What kubelet would have said. */
  message: string;
}

/** Calls Health/Check on 127.0.0.1:`port`; resolves with the outcome, rejects when no answer came (the caller words it). */
export async function grpcHealthCheck(port: number, service: string, signal: AbortSignal, timeoutMs: number, userAgent: string): Promise<GrpcProbeOutcome> {
  const { connect } = await loadHttp2();
  return new Promise<GrpcProbeOutcome>((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    let settled = false;
    const finish = (outcome: GrpcProbeOutcome | Error): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      session.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onAbort = (): void => finish(new Error('the probe timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    session.on('error', (e) => finish(e));
    const stream = session.request({
      ':method': 'POST',
      ':path': HEALTH_CHECK_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': userAgent,
      'grpc-timeout': formatGrpcTimeout(timeoutMs),
    });
    stream.end(healthCheckRequest(service));
    const chunks: Buffer[] = [];
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    stream.on('response', (h: IncomingHttpHeaders, flags: number) => {
      head = h;
      // A trailers-only answer: its status is in the head.
      if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) trailers = h;
    });
    stream.on('trailers', (t: IncomingHttpHeaders) => (trailers = t));
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('error', (e) => finish(e));
    stream.on('end', () => {
      const httpStatus = Number(head[':status']);
      if (httpStatus !== 200) return finish({ ok: false, message: `rpc error: the app answered HTTP ${httpStatus}, not gRPC` });
      const code = parseGrpcStatus(trailers['grpc-status']);
      if (code === undefined) return finish({ ok: false, message: 'rpc error: the answer carried no grpc-status' });
      if (code !== 0) {
        const desc = decodeGrpcMessage(String(trailers['grpc-message'] ?? ''));
        return finish({ ok: false, message: `rpc error: code = ${GRPC_CODE_NAMES[code] ?? `Code(${code})`} desc = ${desc}` });
      }
      const status = servingStatusOf(Buffer.concat(chunks));
      if (status === undefined) return finish({ ok: false, message: 'rpc error: the answer is not a HealthCheckResponse' });
      const name = SERVING_STATUS[status] ?? String(status);
      finish(status === 1 ? { ok: true, message: 'SERVING' } : { ok: false, message: `service unhealthy (responded with "${name}")` });
    });
  });
}
