// The app of pod "a" in the mesh tests (test/netns/mesh.test.ts), run as an
// ordinary uid inside a's namespace, so its connections take the iptables
// redirect to a's proxy like any app's.
//
//   echo HOST PORT PAYLOAD   one TCP round trip; prints {"got": "..."} or {"error": "..."}
//   load JSON                bounded load (see LoadOptions); prints one JSON summary line
//
// Load is bounded in count and in time, and stops by itself. In "closed"
// mode `concurrency` workers each send one request after another; in "rate"
// mode requests start at a fixed rate whatever the answers. A line "stop" on
// stdin stops starting requests (acknowledged with {"stopped": ...}); those in
// flight finish, then the summary is printed.
import { Agent, request } from 'node:http';
import { connect as connectH2, type ClientHttp2Session } from 'node:http2';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

export interface LoadOptions {
  /** http://HOST:PORT */
  origin: string;
  /** Path of each HTTP request; "{i}" becomes the request's number. */
  path: string;
  mode: 'closed' | 'rate';
  concurrency?: number;
  /** Closed mode: worker k starts k * staggerMs late, so requests do not move in lockstep. */
  staggerMs?: number;
  ratePerSecond?: number;
  durationMs: number;
  maxRequests: number;
  timeoutMs: number;
  /** Every n-th request is a TCP echo round trip to this address instead (a new connection each). */
  tcp?: { host: string; port: number; every: number };
  /** Include every request's start, end and outcome in the summary. */
  timeline?: boolean;
  /** Headers sent with every HTTP request. */
  headers?: Record<string, string>;
  /** Requests go as streams of one HTTP/2 connection (h2c, prior knowledge); a timeout resets the stream. */
  http2?: boolean;
  /** Epoch ms of the first request: the caller knows when request i is due (startAt + i / rate). */
  startAt?: number;
  /** Print each request's record as a line when it ends, so a long load can be read while it runs. */
  progress?: boolean;
}

export interface RequestRecord {
  i: number;
  kind: 'http' | 'tcp';
  start: number;
  end: number;
  /** HTTP status, or 0 for a TCP round trip that came back intact. */
  status?: number;
  /** The x-tsmesh-error header of the answer, when it had one. */
  meshError?: string;
  error?: string;
}

export interface LoadSummary {
  sent: number;
  ok: number;
  failed: number;
  http: number;
  tcp: number;
  /** The first failures, at most 20. */
  failures: RequestRecord[];
  /** HTTP answers by status code. */
  statuses: Record<string, number>;
  /** HTTP answers by their x-tsmesh-error header. */
  meshErrors: Record<string, number>;
  timeline?: RequestRecord[];
  startedAt: number;
  endedAt: number;
}

function echoOnce(host: string, port: number, payload: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let got = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no echo within ${timeoutMs} ms (got ${JSON.stringify(got)})`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (d: string) => {
      got += d;
      if (got.length >= payload.length) socket.end();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function httpOnce(agent: Agent, origin: string, path: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<{ status: number; meshError?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, origin), { agent, timeout: timeoutMs, headers }, (res) => {
      res.resume();
      const meshError = res.headers['x-tsmesh-error'];
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ...(typeof meshError === 'string' ? { meshError } : {}) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** One request as a stream of an HTTP/2 session; a timeout cancels the stream (RST_STREAM). */
function h2Once(session: ClientHttp2Session, path: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<{ status: number; meshError?: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers });
    let status = 0;
    let meshError: string | undefined;
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on('response', (h) => {
      status = Number(h[':status']);
      const e = h['x-tsmesh-error'];
      if (typeof e === 'string') meshError = e;
    });
    stream.resume();
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ status, ...(meshError === undefined ? {} : { meshError }) });
    });
    stream.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function load(opts: LoadOptions): Promise<LoadSummary> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 64 });
  let h2: ClientHttp2Session | undefined;
  const h2Session = (): ClientHttp2Session => {
    if (h2 === undefined || h2.closed || h2.destroyed) {
      h2 = connectH2(opts.origin);
      h2.on('error', () => undefined);
    }
    return h2;
  };
  const records: RequestRecord[] = [];
  const onTime = opts.startAt !== undefined && opts.startAt > Date.now();
  if (onTime) await new Promise((r) => setTimeout(r, opts.startAt! - Date.now()));
  const startedAt = onTime ? opts.startAt! : Date.now();
  const deadline = startedAt + opts.durationMs;
  let stopped = false;
  let next = 0;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() !== 'stop') return;
    stopped = true;
    console.log(JSON.stringify({ stopped: Date.now() }));
  });
  const more = (): boolean => !stopped && next < opts.maxRequests && Date.now() < deadline;

  const one = async (): Promise<void> => {
    const i = next++;
    const isTcp = opts.tcp !== undefined && opts.tcp.every > 0 && i % opts.tcp.every === opts.tcp.every - 1;
    const rec: RequestRecord = { i, kind: isTcp ? 'tcp' : 'http', start: Date.now(), end: 0 };
    records.push(rec);
    try {
      if (isTcp) {
        const payload = `echo ${i} ${'x'.repeat(64)}\n`;
        const got = await echoOnce(opts.tcp!.host, opts.tcp!.port, payload, opts.timeoutMs);
        if (got !== payload) rec.error = `echo came back as ${JSON.stringify(got.slice(0, 80))}`;
        else rec.status = 0;
      } else {
        const path = opts.path.replace('{i}', String(i));
        const answer = opts.http2 ? await h2Once(h2Session(), path, opts.timeoutMs, opts.headers) : await httpOnce(agent, opts.origin, path, opts.timeoutMs, opts.headers);
        rec.status = answer.status;
        if (answer.meshError !== undefined) rec.meshError = answer.meshError;
        if (rec.status !== 200) rec.error = `status ${rec.status}`;
      }
    } catch (e) {
      rec.error = (e as Error).message;
    }
    rec.end = Date.now();
    if (opts.progress) console.log(JSON.stringify(rec));
  };

  if (opts.mode === 'closed') {
    const worker = async (k: number): Promise<void> => {
      await new Promise((r) => setTimeout(r, k * (opts.staggerMs ?? 0)));
      while (more()) await one();
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 1 }, (_, k) => worker(k)));
  } else {
    const interval = 1000 / (opts.ratePerSecond ?? 10);
    const inFlight = new Set<Promise<void>>();
    while (more()) {
      // Open loop: each request starts on its own slot, whatever the others are doing.
      const due = startedAt + next * interval;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!more()) break;
      const p = one().finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  }
  rl.close();
  agent.destroy();
  h2?.close();
  const failures = records.filter((r) => r.error !== undefined);
  const statuses: Record<string, number> = {};
  const meshErrors: Record<string, number> = {};
  for (const r of records) {
    if (r.kind !== 'http' || r.status === undefined) continue;
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    if (r.meshError !== undefined) meshErrors[r.meshError] = (meshErrors[r.meshError] ?? 0) + 1;
  }
  return {
    sent: records.length,
    ok: records.length - failures.length,
    failed: failures.length,
    http: records.filter((r) => r.kind === 'http').length,
    tcp: records.filter((r) => r.kind === 'tcp').length,
    failures: failures.slice(0, 20),
    statuses,
    meshErrors,
    ...(opts.timeline ? { timeline: records } : {}),
    startedAt,
    endedAt: Date.now(),
  };
}

const [command = '', ...args] = process.argv.slice(2);
if (command === 'echo') {
  const [host = '', port = '0', payload = 'ping'] = args;
  try {
    console.log(JSON.stringify({ got: await echoOnce(host, Number(port), payload, 5000) }));
  } catch (e) {
    console.log(JSON.stringify({ error: (e as Error).message }));
    process.exitCode = 1;
  }
} else if (command === 'load') {
  const opts = JSON.parse(args[0] ?? '{}') as LoadOptions;
  console.log(JSON.stringify({ started: Date.now() }));
  const summary = await load(opts);
  console.log(JSON.stringify(summary));
  process.exit(0);
} else {
  console.error('usage: mesh-client.ts echo HOST PORT PAYLOAD | load JSON');
  process.exitCode = 2;
}
