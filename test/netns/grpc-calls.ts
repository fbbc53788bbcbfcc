// The calls of the gRPC tests, each made with @grpc/grpc-js and reported as
// plain data: the status the client read (code, details), the response
// metadata (headers) and trailers, and the messages. Used in process by the
// loopback tests and by test/netns/grpc-client.ts in a pod.
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, EchoClient, healthDefinition, type EchoReply, type EchoRequest } from './grpc-service.js';

export interface CallOptions {
  /** Metadata to send (ASCII values). */
  metadata?: Record<string, string>;
  /** The call's deadline, ms from its start. */
  deadlineMs?: number;
  /** The client cancels the call this long after its start (for streams: after the first message). */
  cancelAfterMs?: number;
}

export interface CallResult {
  code: number;
  details: string;
  /** Response metadata (the head), when any came apart from the trailers. */
  headers: Record<string, string>;
  trailers: Record<string, string>;
  replies: EchoReply[];
  ms: number;
}

export type Operation =
  | { op: 'unary'; request: EchoRequest; options?: CallOptions }
  | { op: 'server-stream'; request: EchoRequest; options?: CallOptions }
  | { op: 'client-stream'; requests: EchoRequest[]; options?: CallOptions }
  | { op: 'bidi'; requests: EchoRequest[]; options?: CallOptions }
  | { op: 'health'; service: string; options?: CallOptions };

const plain = (md: grpc.Metadata | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(md?.getMap() ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : String(v)]));

function metadataOf(o: CallOptions | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(o?.metadata ?? {})) md.set(k, v);
  return md;
}

function callOptions(o: CallOptions | undefined): grpc.CallOptions {
  return o?.deadlineMs === undefined ? {} : { deadline: new Date(Date.now() + o.deadlineMs) };
}

/** Opens a client of Echo (and Health) to `target` ("host:port"), plaintext. */
export function echoClient(target: string): EchoClient {
  return new EchoClient(target, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
}

/** Runs one operation to its end; never rejects (a failed call is a result with its code). */
export function runOperation(client: EchoClient, o: Operation): Promise<CallResult> {
  const t0 = performance.now();
  return new Promise<CallResult>((resolve) => {
    const replies: EchoReply[] = [];
    let headers: Record<string, string> = {};
    let call: grpc.ClientUnaryCall | grpc.ClientReadableStream<EchoReply> | grpc.ClientWritableStream<EchoRequest> | grpc.ClientDuplexStream<EchoRequest, EchoReply>;
    let settled = false;
    const finish = (s: grpc.StatusObject): void => {
      if (settled) return;
      settled = true;
      resolve({ code: s.code, details: s.details, headers, trailers: plain(s.metadata), replies, ms: performance.now() - t0 });
    };
    const onReply = (e: grpc.ServiceError | null, r?: EchoReply): void => {
      if (!e && r) replies.push(r);
    };
    const md = metadataOf(o.options);
    const opts = callOptions(o.options);
    switch (o.op) {
      case 'unary':
        call = client.makeUnaryRequest(
          '/tsmesh.test.Echo/Unary',
          (v: EchoRequest) => Buffer.from(JSON.stringify(v)),
          (b: Buffer) => JSON.parse(b.toString()) as EchoReply,
          o.request,
          md,
          opts,
          onReply,
        );
        break;
      case 'health':
        call = client.makeUnaryRequest(
          healthDefinition.Check.path,
          healthDefinition.Check.requestSerialize,
          (b: Buffer) => ({ app: '', text: String(healthDefinition.Check.responseDeserialize(b).status), received: 0, metadata: {} }) as EchoReply,
          { service: o.service },
          md,
          opts,
          onReply,
        );
        break;
      case 'server-stream': {
        const s = client.makeServerStreamRequest(
          '/tsmesh.test.Echo/ServerStream',
          (v: EchoRequest) => Buffer.from(JSON.stringify(v)),
          (b: Buffer) => JSON.parse(b.toString()) as EchoReply,
          o.request,
          md,
          opts,
        );
        s.on('data', (r: EchoReply) => {
          replies.push(r);
          if (replies.length === 1 && o.options?.cancelAfterMs !== undefined) setTimeout(() => s.cancel(), o.options.cancelAfterMs);
        });
        s.on('error', () => undefined);
        call = s;
        break;
      }
      case 'client-stream': {
        const s = client.makeClientStreamRequest(
          '/tsmesh.test.Echo/ClientStream',
          (v: EchoRequest) => Buffer.from(JSON.stringify(v)),
          (b: Buffer) => JSON.parse(b.toString()) as EchoReply,
          md,
          opts,
          onReply,
        );
        for (const r of o.requests) s.write(r);
        s.end();
        call = s;
        break;
      }
      case 'bidi': {
        const s = client.makeBidiStreamRequest(
          '/tsmesh.test.Echo/Bidi',
          (v: EchoRequest) => Buffer.from(JSON.stringify(v)),
          (b: Buffer) => JSON.parse(b.toString()) as EchoReply,
          md,
          opts,
        );
        // One message at a time: the next goes once the echo of the one before has come back.
        let sent = 0;
        const sendNext = (): void => {
          if (sent < o.requests.length) s.write(o.requests[sent++]!);
          else s.end();
        };
        s.on('data', (r: EchoReply) => {
          replies.push(r);
          sendNext();
        });
        s.on('error', () => undefined);
        sendNext();
        call = s;
        break;
      }
    }
    call.on('metadata', (m: grpc.Metadata) => (headers = plain(m)));
    call.on('status', finish);
    if (o.options?.cancelAfterMs !== undefined && o.op !== 'server-stream') setTimeout(() => call.cancel(), o.options.cancelAfterMs);
  });
}
