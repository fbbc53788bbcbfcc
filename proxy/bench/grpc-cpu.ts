// CPU time per gRPC call of a sidecar pair on loopback, beside an HAProxy
// pair doing the same (h2c in, h2 over TLS 1.3 with client certificates
// between the two, h2c to the app) and a pair of bare node:http2 relays:
//
//   h2load -> [client sidecar out] ==== mTLS ====> [server sidecar in] -> app (grpc-app.ts)
//
// Each sidecar runs in a process of its own (grpc-cpu-sidecar.ts), so its
// CPU time (the scheduler's exact figure for each of its threads: the
// garbage collector's helpers spend a third of it) is its own.
// What this measures is little moved by other work on the machine: CPU time
// per call, not calls per second. The runs take turns in slices; per slice
// and per proxy, the CPU it spent divided by the calls completed.
//
//   tsx proxy/bench/grpc-cpu.ts
// Environment: GRPC_CPU_ROUNDS (rounds per phase, default 5), GRPC_CPU_SLICE_S
// (seconds per slice, 3), GRPC_CPU_RATE (calls/s of the fixed-rate phase,
// 1000), GRPC_CPU_CLIENTS (h2load connections, 10), GRPC_CPU_STREAMS (16),
// GRPC_CPU_BYTES (message bytes each way, 64), GRPC_CPU_HAPROXY=0 (no
// HAProxy pair), GRPC_CPU_RELAYS=0 (no node-h2 pair: two h2-relay.ts
// processes, node:http2 with nothing of the proxy's around it),
// GRPC_CPU_H2F=1 (a tsmesh-h2f pair: the sidecars with TSMESH_H2_FRAMES on,
// tsmesh/h2f between them), GRPC_CPU_FRAMES=1 (a frames pair: h2-frame-relay.ts, node:http2 only at
// the ends and a framing of its own between the two), GRPC_CPU_H1=1 (a tsmesh-h1 pair: the HTTP/1.1 path, over tsmesh/mux,
// to an HTTP/1.1 app, in the same slices), GRPC_CPU_BASELINE=DIR (a second tsmesh pair, "baseline", run from another
// checkout with its node_modules, e.g. the commit before a change, or this
// one with GRPC_CPU_BASELINE_FLAGS, node flags of its own in place of
// GRPC_CPU_NODE_FLAGS), GRPC_CPU_NODE_FLAGS (added to the sidecars' node flags, e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/p" or "--trace-gc"; their output lands in
// the working folder, printed at the end with GRPC_CPU_KEEP=1),
// GRPC_CPU_SIDECAR_ENV (NAME=VALUE,... set in the sidecars' environment),
// GRPC_CPU_SERVE=1 (start everything, print the URLs and PIDs, measure nothing).
// Needs h2load (nghttp2-client), and haproxy for the comparator.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { PROXY_ENV, PROXY_NODE_OPTIONS } from '../../contract/env.js';
import { issueCredentials } from '../testdata/mesh.js';
import { memory } from './measure.js';
import type { SidecarSetup } from './grpc-cpu-sidecar.js';
import type { RelaySetup } from './h2-relay.js';
import type { FrameRelaySetup } from './h2-frame-relay.js';

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!(n > 0)) throw new Error(`${name}=${JSON.stringify(raw)} is not a positive number`);
  return n;
};
const ROUNDS = num('GRPC_CPU_ROUNDS', 5);
const SLICE_S = num('GRPC_CPU_SLICE_S', 3);
const RATE = num('GRPC_CPU_RATE', 1000);
const CLIENTS = num('GRPC_CPU_CLIENTS', 10);
const STREAMS = num('GRPC_CPU_STREAMS', 16);
const BYTES = num('GRPC_CPU_BYTES', 64);
const WITH_HAPROXY = process.env['GRPC_CPU_HAPROXY'] !== '0';
const WITH_RELAYS = process.env['GRPC_CPU_RELAYS'] !== '0';
const WITH_H1 = process.env['GRPC_CPU_H1'] === '1';
const WITH_FRAMES = process.env['GRPC_CPU_FRAMES'] === '1';
const WITH_H2F = process.env['GRPC_CPU_H2F'] === '1';
const BASELINE = process.env['GRPC_CPU_BASELINE'];
const NODE_FLAGS = (process.env['GRPC_CPU_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);
const BASELINE_FLAGS = process.env['GRPC_CPU_BASELINE_FLAGS']?.split(' ').filter(Boolean) ?? NODE_FLAGS;
const SIDECAR_ENV = Object.fromEntries(
  (process.env['GRPC_CPU_SIDECAR_ENV'] ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const REPO = new URL('../../', import.meta.url).pathname;
const METHOD = '/tsmesh.bench.Echo/Unary';
const SERVICE_IP = '10.96.0.10';
const WEB = 'spiffe://cluster.local/ns/bench/sa/client';
const API = 'spiffe://cluster.local/ns/bench/sa/server';

const work = mkdtempSync(join(tmpdir(), 'tsmesh-grpc-cpu-'));
const children: ChildProcess[] = [];

/** Starts a process and resolves with it and its first stdout line matching `ready`; its output goes on to `work`/`name`.out. */
function start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(command, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const out = createWriteStream(join(work, `${name}.out`));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      out.write(`${line}\n`);
      if (ready.test(line)) resolve({ child, line });
    });
    child.once('exit', (code) => reject(new Error(`${command} ${args.join(' ')} exited ${code} before it was ready:\n${stderr}`)));
  });
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Pair {
  name: string;
  url: string;
  pids: number[];
  /** h2load's options for this pair, if not the gRPC defaults, and how many connections they open. */
  load?: string[];
  connections?: number;
}

/** A tsmesh pair; `root`: the checkout whose proxy runs (another one for a before/after comparison). */
async function startTsmesh(appPort: number, name = 'tsmesh', root = REPO, flags = NODE_FLAGS, protocol: 'http2' | 'http' = 'http2', env: NodeJS.ProcessEnv = {}): Promise<Pair> {
  const { ca } = await newRootCa();
  const sidecar = async (side: string, setup: SidecarSetup): Promise<{ child: ChildProcess; ports: { outboundPort: number; inboundPort: number } }> => {
    const file = join(work, `${name}-${side}.json`);
    writeFileSync(file, JSON.stringify(setup));
    const { child, line } = await start(`${name}-${side}`, process.execPath, [...flags.map((f) => f.replace('{work}', work)), '--import', 'tsx', join(root, 'proxy/bench/grpc-cpu-sidecar.ts'), file], { NODE_OPTIONS: PROXY_NODE_OPTIONS, ...SIDECAR_ENV, ...env }, /^ready /);
    return { child, ports: JSON.parse(line.slice(6)) as { outboundPort: number; inboundPort: number } };
  };
  const server = await sidecar('server', { credentials: issueCredentials(ca, API), config: {}, listener: 'inbound', originalDestination: { address: '127.0.0.1', port: appPort } });
  const service = {
    name: 'echo',
    namespace: 'bench',
    clusterIPs: [SERVICE_IP],
    ports: [{ port: 50051, name: protocol === 'http2' ? 'grpc' : 'http', protocol, targetPort: server.ports.inboundPort }],
    endpoints: [{ address: '127.0.0.1', identity: API }],
  };
  const client = await sidecar('client', { credentials: issueCredentials(ca, WEB), config: { services: [service] }, listener: 'outbound', originalDestination: { address: SERVICE_IP, port: 50051 } });
  return { name, url: `http://127.0.0.1:${client.ports.outboundPort}${METHOD}`, pids: [client.child.pid!, server.child.pid!] };
}

async function startHaproxy(appPort: number): Promise<Pair> {
  const { ca } = await newRootCa();
  const pem = (name: string, id: string): string => {
    const c = issueCredentials(ca, id);
    writeFileSync(join(work, `${name}.pem`), c.certChainPem + c.keyPem);
    writeFileSync(join(work, `${name}-bundle.pem`), c.trustBundlePem);
    return join(work, name);
  };
  const [front, back] = [await freePort(), await freePort()];
  const common = 'global\n  nbthread 1\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
  const s = pem('haproxy-server', API);
  const c = pem('haproxy-client', WEB);
  const server = `${common}frontend inbound\n  bind 127.0.0.1:${back} ssl crt ${s}.pem ca-file ${s}-bundle.pem verify required ssl-min-ver TLSv1.3 alpn h2\n  default_backend app\nbackend app\n  http-reuse always\n  server app 127.0.0.1:${appPort} proto h2\n`;
  const client = `${common}frontend outbound\n  bind 127.0.0.1:${front} proto h2\n  default_backend mesh\nbackend mesh\n  http-reuse always\n  server upstream 127.0.0.1:${back} ssl verify required ca-file ${c}-bundle.pem crt ${c}.pem ssl-min-ver TLSv1.3 alpn h2\n`;
  writeFileSync(join(work, 'haproxy-server.cfg'), server);
  writeFileSync(join(work, 'haproxy-client.cfg'), client);
  const pids: number[] = [];
  for (const name of ['haproxy-client', 'haproxy-server']) {
    const child = spawn('haproxy', ['-db', '-f', `${name}.cfg`], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(child);
    pids.push(child.pid!);
  }
  return { name: 'haproxy', url: `http://127.0.0.1:${front}${METHOD}`, pids };
}

/** An HTTP/1.1 app answering every request with BYTES bytes once it has read the request. */
async function startH1App(): Promise<number> {
  const port = await freePort();
  const app = `const reply = Buffer.alloc(${BYTES}, 'r');
require('node:http').createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.on('data', () => undefined);
  req.on('end', () => res.end(reply));
}).listen(${port}, '127.0.0.1', () => console.log('ready'));`;
  await start('h1-app', process.execPath, ['-e', app], {}, /^ready/);
  return port;
}

/**
 * The same tsmesh pair for HTTP/1.1 (a Service port of protocol http:
 * tsmesh/mux between the sidecars) to an HTTP/1.1 app: what the HTTP/1.1
 * path costs per request in the same slices, POSTs of BYTES each way over
 * as many keep-alive connections as the gRPC runs have streams in flight.
 */
async function startH1(appPort: number): Promise<Pair> {
  const pair = await startTsmesh(appPort, 'tsmesh-h1', REPO, NODE_FLAGS, 'http');
  const body = join(work, 'request.bin');
  writeFileSync(body, Buffer.alloc(BYTES, 'q'));
  return { ...pair, url: pair.url.replace(METHOD, '/'), connections: CLIENTS * STREAMS, load: ['--h1', '-c', String(CLIENTS * STREAMS), '-m', '1', '-d', body, '-H', 'content-type: application/octet-stream'] };
}

/** Two h2-relay.ts processes with mTLS between them: node:http2 and nothing else. */
async function startRelays(appPort: number): Promise<Pair> {
  const tls = await meshTls();
  const server = await startRelay('h2-relay.ts', 'relay-server', { listen: { port: 0, tls: tls(API) }, upstream: { port: appPort } } satisfies RelaySetup);
  const client = await startRelay('h2-relay.ts', 'relay-client', { listen: { port: 0 }, upstream: { port: server.port, tls: tls(WEB) } } satisfies RelaySetup);
  return { name: 'node-h2', url: `http://127.0.0.1:${client.port}${METHOD}`, pids: [client.child.pid!, server.child.pid!] };
}

/** The certificate, key and roots of a SPIFFE ID from a new mesh CA, as PEM, for the relays. */
async function meshTls(): Promise<(id: string) => { cert: string; key: string; ca: string }> {
  const { ca } = await newRootCa();
  return (id) => {
    const c = issueCredentials(ca, id);
    return { cert: c.certChainPem, key: c.keyPem, ca: c.trustBundlePem };
  };
}

/** Starts one relay process (`script` in proxy/bench/) with its setup; resolves with it and its port. */
async function startRelay(script: string, name: string, setup: object): Promise<{ child: ChildProcess; port: number }> {
  const file = join(work, `${name}.json`);
  writeFileSync(file, JSON.stringify(setup));
  const { child, line } = await start(name, process.execPath, [...NODE_FLAGS.map((f) => f.replace('{work}', work)), '--import', 'tsx', join(REPO, 'proxy/bench', script), file], { NODE_OPTIONS: PROXY_NODE_OPTIONS }, /^ready /);
  return { child, port: Number(line.slice(6)) };
}

/** Two h2-frame-relay.ts processes: node:http2 to the client and to the app, frames of their own between them. */
async function startFrameRelays(appPort: number): Promise<Pair> {
  const tls = await meshTls();
  const server = await startRelay('h2-frame-relay.ts', 'frames-server', { side: 'server', listen: { port: 0, tls: tls(API) }, upstream: { port: appPort } } satisfies FrameRelaySetup);
  const client = await startRelay('h2-frame-relay.ts', 'frames-client', { side: 'client', listen: { port: 0 }, upstream: { port: server.port, tls: tls(WEB) } } satisfies FrameRelaySetup);
  return { name: 'frames', url: `http://127.0.0.1:${client.port}${METHOD}`, pids: [client.child.pid!, server.child.pid!] };
}

/** One h2load run; resolves with the calls completed with status 200. */
function h2load(pair: Pair, args: string[]): Promise<{ ok: number; failed: number }> {
  return new Promise((resolve, reject) => {
    const load = pair.load ?? ['-c', String(CLIENTS), '-m', String(STREAMS), '-d', join(work, 'call.grpc'), '-H', 'content-type: application/grpc', '-H', 'te: trailers'];
    const child = spawn('h2load', [...load, ...args, pair.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      const done = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
      const codes = /status codes: (\d+) 2xx/.exec(out);
      if (code !== 0 || !done || !codes) return reject(new Error(`h2load exited ${code}:\n${out}`));
      resolve({ ok: Number(codes[1]), failed: Number(done[3]) + Number(done[4]) });
    });
  });
}

interface Sample {
  calls: number;
  failed: number;
  /** CPU microseconds per call, per proxy. */
  usPerCall: number[];
  seconds: number;
}

/** Time on a CPU of every thread of the process (/proc/PID/task/TID/schedstat, nanoseconds), in seconds: exact, where /proc/PID/stat counts clock ticks. */
function cpuSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended meanwhile: its time is lost to this slice.
    }
  }
  return ns / 1e9;
}

async function slice(pair: Pair, args: string[]): Promise<Sample> {
  const before = pair.pids.map(cpuSeconds);
  const t0 = performance.now();
  const r = await h2load(pair, [...args, '-D', String(SLICE_S)]);
  const seconds = (performance.now() - t0) / 1000;
  const spent = pair.pids.map((pid, i) => cpuSeconds(pid) - before[i]!);
  return { calls: r.ok, failed: r.failed, seconds, usPerCall: spent.map((s) => (r.ok ? (s * 1e6) / r.ok : Number.NaN)) };
}

const fmt = (xs: number[], d = 0): string => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${median.toFixed(d)} (${s[0]!.toFixed(d)}-${s[s.length - 1]!.toFixed(d)})`;
};

async function main(): Promise<void> {
  const message = Buffer.alloc(5 + BYTES, 'q');
  message[0] = 0;
  message.writeUInt32BE(BYTES, 1);
  writeFileSync(join(work, 'call.grpc'), message);
  if (spawnSync('h2load', ['--version']).status !== 0) throw new Error('h2load is not installed (Debian: nghttp2-client)');
  const appPort = await freePort();
  await start('app', process.execPath, ['--import', 'tsx', join(REPO, 'proxy/bench/grpc-app.ts'), String(appPort), String(BYTES)], {}, /^ready/);
  const pairs = [await startTsmesh(appPort)];
  if (BASELINE) pairs.push(await startTsmesh(appPort, 'baseline', BASELINE, BASELINE_FLAGS));
  if (WITH_RELAYS) pairs.push(await startRelays(appPort));
  if (WITH_FRAMES) pairs.push(await startFrameRelays(appPort));
  if (WITH_H2F) pairs.push(await startTsmesh(appPort, 'tsmesh-h2f', REPO, NODE_FLAGS, 'http2', { [PROXY_ENV.H2_FRAMES]: 'true' }));
  if (WITH_H1) pairs.push(await startH1(await startH1App()));
  if (WITH_HAPROXY) pairs.push(await startHaproxy(appPort));
  if (process.env['GRPC_CPU_SERVE'] === '1') {
    // Started, not measured: the URLs and PIDs to drive by hand; ends on SIGINT or SIGTERM.
    for (const p of pairs) console.log(`${p.name.padEnd(8)} ${p.url} pids ${p.pids.join(' ')}`);
    await new Promise<void>((r) => ['SIGINT', 'SIGTERM'].forEach((sig) => process.once(sig, r)));
    return;
  }
  const perClient = Math.max(1, Math.round(RATE / CLIENTS));
  for (const p of pairs) await h2load(p, ['-D', '3']); // warm-up, connections open, code optimized
  // h2load's --rps is per connection.
  const phases: [string, (p: Pair) => string[]][] = [
    [`fixed ${perClient * CLIENTS}/s`, (p) => ['--rps', String(Math.max(1, Math.round(RATE / (p.connections ?? CLIENTS))))]],
    ['saturation', () => []],
  ];
  const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (const p of pairs) console.log(`${p.name.padEnd(8)} ${p.url} pids ${p.pids.join(' ')}`);
  console.log(`gRPC unary ${BYTES} B each way, h2load ${CLIENTS} connections x ${STREAMS} streams, ${ROUNDS} rounds of ${SLICE_S} s per phase; load average ${load()}`);
  for (const [phase, args] of phases) {
    const samples = new Map<string, Sample[]>(pairs.map((p) => [p.name, []]));
    for (let round = 0; round < ROUNDS; round++) for (const p of pairs) samples.get(p.name)!.push(await slice(p, args(p)));
    for (const p of pairs) {
      const s = samples.get(p.name)!;
      const failed = s.reduce((n, x) => n + x.failed, 0);
      const rss = p.pids.map((pid) => memory(pid).rssMb.toFixed(1)).join(' / ');
      console.log(
        `${phase.padEnd(16)} ${p.name.padEnd(8)} calls/s ${fmt(s.map((x) => x.calls / x.seconds))}  CPU us/call client ${fmt(s.map((x) => x.usPerCall[0]!))}  server ${fmt(s.map((x) => x.usPerCall[1]!))}  RSS MB ${rss}${failed ? `  FAILED ${failed}` : ''}`,
      );
    }
  }
  console.log(`load average ${load()}`);
}

try {
  await main();
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));
  if (process.env['GRPC_CPU_KEEP'] === '1') console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
