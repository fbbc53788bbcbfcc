// The gRPC service of the protocol tests, built by hand for @grpc/grpc-js
// (no .proto: messages are JSON, framed by gRPC as any message is), and
// grpc.health.v1.Health, whose two messages are encoded here as protobuf.
// test/netns/grpc-app.ts serves it in a pod, test/netns/grpc-client.ts calls
// it from another; loopback tests serve and call it in process.
//
// Echo/Unary answers what it was sent, with the metadata it saw; the request
// says how to fail instead: `fail` (a status, a message and trailing
// metadata), `failFirst` (fail the first N calls of a key, then answer), or
// how long to wait first (`delayMs`, `hang`). Echo/ServerStream sends
// `count` messages `intervalMs` apart; Echo/ClientStream answers how many it
// received; Echo/Bidi echoes each message as it comes.
import * as grpc from '@grpc/grpc-js';

export const ECHO_SERVICE = 'tsmesh.test.Echo';

export interface EchoRequest {
  text?: string;
  /** Bytes of padding added to the reply (4 MB messages). */
  pad?: number;
  fail?: { code: number; message: string; trailers?: Record<string, string> };
  /** Fail the first `times` calls with this key with `code`, then answer. */
  failFirst?: { key: string; times: number; code: number };
  delayMs?: number;
  /** Never answer: the call waits until its caller or the mesh cancels it. */
  hang?: boolean;
  /** ServerStream: how many messages, how far apart. */
  count?: number;
  intervalMs?: number;
}

export interface EchoReply {
  app: string;
  text: string;
  /** The call's metadata as the app saw it (grpc-js keeps grpc-timeout and te to itself). */
  metadata: Record<string, string>;
  /** How long the app had left of the call's deadline when it came (ms; absent without one). */
  deadlineMs?: number;
  /** The length of the request's text (4 MB messages are not echoed back whole). */
  received: number;
  pad?: string;
  /** ServerStream: the message's index; ClientStream: how many came. */
  n?: number;
  /** failFirst: which call of its key this was. */
  attempt?: number;
}

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString('utf8')),
};

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/${ECHO_SERVICE}/${name}`,
    requestStream,
    responseStream,
    originalName: name,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  };
}

export const echoDefinition = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  ClientStream: method('ClientStream', true, false),
  Bidi: method('Bidi', true, true),
} satisfies grpc.ServiceDefinition;

export const EchoClient = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
export type EchoClient = InstanceType<typeof EchoClient>;

/** grpc.health.v1.HealthCheckResponse.ServingStatus. */
export const SERVING_STATUS = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;
export type ServingStatusName = keyof typeof SERVING_STATUS;

/** HealthCheckRequest { string service = 1; } */
function decodeHealthRequest(b: Buffer): { service: string } {
  let service = '';
  for (let i = 0; i < b.length; ) {
    const tag = b[i++]!;
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const x = b[i++]!;
      len |= (x & 0x7f) << shift;
      if (x < 0x80) break;
    }
    if (tag === 0x0a) service = b.toString('utf8', i, i + len);
    i += len;
  }
  return { service };
}

/** HealthCheckResponse { ServingStatus status = 1; } */
function encodeHealthResponse(r: { status: number }): Buffer {
  return r.status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, r.status]);
}

export const healthDefinition = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    originalName: 'Check',
    requestSerialize: (r: { service: string }) => Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(r.service)]), Buffer.from(r.service)]),
    requestDeserialize: decodeHealthRequest,
    responseSerialize: encodeHealthResponse,
    responseDeserialize: (b: Buffer) => ({ status: b.length >= 2 ? b[1]! : 0 }),
  },
} satisfies grpc.ServiceDefinition;

/** What the app reports of the calls it served. */
export type AppEvent =
  | { event: 'call'; method: string; text?: string; metadata: Record<string, string> }
  | { event: 'cancelled'; method: string; text?: string }
  | { event: 'health'; service: string; status: number };

const metadataOf = (md: grpc.Metadata): Record<string, string> =>
  Object.fromEntries(Object.entries(md.getMap()).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : String(v)]));

export interface EchoServer {
  server: grpc.Server;
  port: number;
  /** Sets the health of a service ("" is the whole server's). */
  setHealth(service: string, status: ServingStatusName): void;
  close(): Promise<void>;
}

/** Serves Echo and Health on `host`:`port` (0: any free port) in plaintext; `log` gets every call and cancellation. */
export async function startEchoServer(app: string, host: string, port: number, log: (e: AppEvent) => void, options: grpc.ServerOptions = {}): Promise<EchoServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 << 20, 'grpc.max_send_message_length': 16 << 20, ...options });
  const failures = new Map<string, number>();
  const health = new Map<string, number>([['', SERVING_STATUS.SERVING]]);
  /** Logs the call's cancellation, unless it was answered first: grpc-js says 'cancelled' when any call's stream closes. */
  const watchCancel = (call: { on(event: 'cancelled', l: () => void): unknown }, name: string, text?: string): { answered: () => void } => {
    let answered = false;
    call.on('cancelled', () => {
      if (!answered) log({ event: 'cancelled', method: name, ...(text === undefined || text.length > 256 ? {} : { text }) });
    });
    return { answered: () => (answered = true) };
  };
  const deadlineOf = (call: { getDeadline(): grpc.Deadline }): Partial<EchoReply> => {
    const d = call.getDeadline();
    const at = d instanceof Date ? d.getTime() : d;
    return Number.isFinite(at) ? { deadlineMs: at - Date.now() } : {};
  };
  const reply = (req: EchoRequest, md: grpc.Metadata, extra: Partial<EchoReply> = {}): EchoReply => ({
    app,
    text: (req.text ?? '').length > 256 ? '' : (req.text ?? ''),
    received: (req.text ?? '').length,
    metadata: metadataOf(md),
    ...(req.pad ? { pad: 'p'.repeat(req.pad) } : {}),
    ...extra,
  });
  const failure = (f: NonNullable<EchoRequest['fail']>): Partial<grpc.StatusObject> => {
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(f.trailers ?? {})) metadata.set(k, v);
    return { code: f.code, details: f.message, metadata };
  };
  server.addService(echoDefinition, {
    Unary: (call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const req = call.request;
      log({ event: 'call', method: 'Unary', ...(req.text === undefined || req.text.length > 256 ? {} : { text: req.text }), metadata: metadataOf(call.metadata) });
      const watch = watchCancel(call, 'Unary', req.text);
      if (req.hang) return;
      let attempt: number | undefined;
      if (req.failFirst) {
        attempt = (failures.get(req.failFirst.key) ?? 0) + 1;
        failures.set(req.failFirst.key, attempt);
        if (attempt <= req.failFirst.times) {
          watch.answered();
          callback({ code: req.failFirst.code, details: `failing call ${attempt} of ${req.failFirst.times}` });
          return;
        }
      }
      const answer = (): void => {
        watch.answered();
        if (req.fail) callback(failure(req.fail));
        else callback(null, reply(req, call.metadata, { ...deadlineOf(call), ...(attempt === undefined ? {} : { attempt }) }));
      };
      if (req.delayMs) setTimeout(answer, req.delayMs);
      else answer();
    },
    ServerStream: (call: grpc.ServerWritableStream<EchoRequest, EchoReply>) => {
      const req = call.request;
      log({ event: 'call', method: 'ServerStream', ...(req.text === undefined ? {} : { text: req.text }), metadata: metadataOf(call.metadata) });
      const watch = watchCancel(call, 'ServerStream', req.text);
      let n = 0;
      const count = req.count ?? 3;
      const next = (): void => {
        if (call.cancelled) return;
        if (n >= count) {
          watch.answered();
          if (req.fail) call.emit('error', failure(req.fail));
          else call.end();
          return;
        }
        call.write(reply(req, call.metadata, { n: n++ }));
        setTimeout(next, req.intervalMs ?? 0);
      };
      next();
    },
    ClientStream: (call: grpc.ServerReadableStream<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      log({ event: 'call', method: 'ClientStream', metadata: metadataOf(call.metadata) });
      const watch = watchCancel(call, 'ClientStream');
      let n = 0;
      let received = 0;
      const texts: string[] = [];
      call.on('data', (m: EchoRequest) => {
        n++;
        received += (m.text ?? '').length;
        if ((m.text ?? '').length <= 64) texts.push(m.text ?? '');
      });
      call.on('end', () => {
        watch.answered();
        callback(null, { app, text: texts.join(','), received, n, metadata: metadataOf(call.metadata) });
      });
    },
    Bidi: (call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) => {
      log({ event: 'call', method: 'Bidi', metadata: metadataOf(call.metadata) });
      const watch = watchCancel(call, 'Bidi');
      let n = 0;
      call.on('data', (m: EchoRequest) => call.write(reply(m, call.metadata, { n: n++ })));
      call.on('end', () => {
        watch.answered();
        call.end();
      });
    },
  });
  server.addService(healthDefinition, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, { status: number }>, callback: grpc.sendUnaryData<{ status: number }>) => {
      const status = health.get(call.request.service);
      log({ event: 'health', service: call.request.service, status: status ?? -1 });
      if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
      else callback(null, { status });
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    server,
    port: bound,
    setHealth: (service, status) => health.set(service, SERVING_STATUS[status]),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** Client options of the tests: 16 MB messages, and no retries of grpc-js's own (the mesh's are under test). */
export const CLIENT_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 16 << 20,
  'grpc.max_send_message_length': 16 << 20,
  'grpc.enable_retries': 0,
};
