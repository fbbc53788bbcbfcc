// The calling side of test/node/protocols.test.ts, run by kubectl exec in a
// client pod of the test apps' image (test/node/build.sh bundles it with
// @grpc/grpc-js). Each mode prints one JSON line with what it saw, and every
// call it makes has a bound of its own: nothing here waits forever.
//
//   http BOUND_MS URL...    one GET to each URL in turn: status,
//                           x-tsmesh-error, the body (JSON when it parses),
//                           milliseconds, or the error
//   req BOUND_MS REQUESTS   requests in turn, REQUESTS a JSON array of
//                           {"url", "method", "headers"}: as http, with
//                           x-tsmesh-policy too
//   tcp BOUND_MS HOST:PORT TEXT  a TCP connection that sends TEXT and reads
//                           until as many bytes came back, the peer closed,
//                           or the bound: what came back, and how it ended;
//                           with TEXT empty, sends nothing and waits for the
//                           server's first bytes (a server that speaks first)
//   load SPEC               closed-loop GETs, SPEC a JSON object
//                           {"seconds", "boundMs", "targets": [{"url",
//                           "concurrency"}]}; per target: calls sent, statuses,
//                           x-tsmesh-error values, the pods that answered,
//                           calls the bound cut (aborted), p50, p99 and the
//                           longest in ms by status, and the longest stretch
//                           in which no call was answered 200 (from the start)
//   grpc TARGET OPS         gRPC calls (test/netns/grpc-calls.ts Operations,
//                           a JSON array) to HOST:PORT over one channel, in
//                           order; their CallResults
// Usage: node calls.mjs MODE ARGS...
import { connect } from 'node:net';
import { echoClient, runOperation, type Operation } from '../../netns/grpc-calls.js';

interface Answer {
  url: string;
  status?: number;
  meshError?: string;
  policy?: string;
  body?: unknown;
  error?: string;
  ms: number;
  /** performance.now() when it ended. */
  endedAt?: number;
}

interface Request {
  url: string;
  method?: string;
  headers?: Record<string, string>;
}

async function get(url: string, boundMs: number, init: Omit<Request, 'url'> = {}): Promise<Answer> {
  const t0 = performance.now();
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(boundMs) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // a text answer (the proxy's own errors)
    }
    const meshError = res.headers.get('x-tsmesh-error');
    const policy = res.headers.get('x-tsmesh-policy');
    const endedAt = performance.now();
    return { url, status: res.status, ...(meshError === null ? {} : { meshError }), ...(policy === null ? {} : { policy }), body, ms: endedAt - t0, endedAt };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    const endedAt = performance.now();
    return { url, error: err.name === 'TimeoutError' ? 'aborted' : (err.cause?.code ?? err.message), ms: endedAt - t0, endedAt };
  }
}

const percentile = (xs: number[], p: number): number => Math.round([...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0);

interface LoadSpec {
  seconds: number;
  boundMs: number;
  targets: { url: string; concurrency: number }[];
}

async function load(spec: LoadSpec): Promise<object> {
  const end = Date.now() + spec.seconds * 1000;
  const t0 = performance.now();
  return Promise.all(
    spec.targets.map(async (t) => {
      const answers: Answer[] = [];
      await Promise.all(
        Array.from({ length: t.concurrency }, async () => {
          while (Date.now() < end) answers.push(await get(t.url, spec.boundMs));
        }),
      );
      const count = (key: (a: Answer) => string | undefined): Record<string, number> => {
        const counts: Record<string, number> = {};
        for (const a of answers) {
          const k = key(a);
          if (k !== undefined) counts[k] = (counts[k] ?? 0) + 1;
        }
        return counts;
      };
      const ms: Record<string, { p50: number; p99: number; max: number }> = {};
      for (const status of Object.keys(count((a) => String(a.status ?? a.error)))) {
        const xs = answers.filter((a) => String(a.status ?? a.error) === status).map((a) => a.ms);
        ms[status] = { p50: percentile(xs, 0.5), p99: percentile(xs, 0.99), max: Math.round(Math.max(...xs)) };
      }
      let longestGapMs = 0;
      let last = t0;
      for (const at of answers.filter((a) => a.status === 200).map((a) => a.endedAt!).sort((a, b) => a - b)) {
        longestGapMs = Math.max(longestGapMs, at - last);
        last = at;
      }
      return {
        url: t.url,
        sent: answers.length,
        statuses: count((a) => (a.status === undefined ? undefined : String(a.status))),
        meshErrors: count((a) => a.meshError),
        pods: count((a) => (a.status === 200 ? (a.body as { pod?: string }).pod : undefined)),
        errors: count((a) => a.error),
        ms,
        longestGapMs: Math.round(longestGapMs),
      };
    }),
  );
}

/** One TCP connection: sends text, reads until it all came back, the peer closed, or the bound. */
function tcpEcho(target: string, text: string, boundMs: number): Promise<object> {
  const t0 = performance.now();
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    let echoed = '';
    let error: string | undefined;
    const socket = connect({ host, port });
    const done = (ended: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ target, echoed, ended, ...(error ? { error } : {}), ms: Math.round(performance.now() - t0) });
    };
    const timer = setTimeout(() => done('bound'), boundMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => text !== '' && socket.write(text));
    socket.on('data', (chunk: string) => {
      echoed += chunk;
      if (echoed.length >= Math.max(text.length, 1)) done('echoed');
    });
    socket.on('error', (e: Error & { code?: string }) => void (error = e.code ?? e.message));
    socket.on('close', () => done('closed'));
  });
}

async function grpcCalls(target: string, ops: Operation[]): Promise<object> {
  const client = echoClient(target);
  const results = [];
  for (const op of ops) results.push(await runOperation(client, op));
  client.close();
  return results;
}

const [mode, ...args] = process.argv.slice(2);
let result: object;
if (mode === 'http' && args.length >= 2) {
  const answers: Answer[] = [];
  for (const url of args.slice(1)) answers.push(await get(url, Number(args[0])));
  result = answers;
} else if (mode === 'req' && args.length === 2) {
  const answers: Answer[] = [];
  for (const { url, ...init } of JSON.parse(args[1]!) as Request[]) answers.push(await get(url, Number(args[0]), init));
  result = answers;
} else if (mode === 'tcp' && args.length === 3) result = await tcpEcho(args[1]!, args[2]!, Number(args[0]));
else if (mode === 'load' && args.length === 1) result = await load(JSON.parse(args[0]!) as LoadSpec);
else if (mode === 'grpc' && args.length === 2) result = await grpcCalls(args[0]!, JSON.parse(args[1]!) as Operation[]);
else {
  process.stderr.write('usage: calls.mjs http BOUND_MS URL... | req BOUND_MS REQUESTS | tcp BOUND_MS HOST:PORT TEXT | load SPEC | grpc HOST:PORT OPERATIONS\n');
  process.exit(2);
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
