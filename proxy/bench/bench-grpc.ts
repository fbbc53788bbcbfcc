// npm run bench:grpc: what a pair of tsmesh sidecars costs a gRPC service,
// beside a direct connection and beside a pair of HAProxy sidecars carrying
// the same HTTP/2 over the same mTLS, in network namespaces this script
// creates (topology.ts), as bench-sidecar.ts does for HTTP/1.1:
//
//   client pod ns (10.244.200.2)                  server pod ns (10.244.200.3)
//   h2load -> [sidecar :15001] ==== mTLS, h2 ====> [sidecar :15006] -> app 127.0.0.1:50051
//
//   direct   h2load dials the app at 10.244.200.3:50051; no redirects, no sidecars.
//   haproxy  `tsmesh init` in both pods; HAProxy as uid 1337, h2c in on 15001
//            (proto h2), TLS 1.3 with ALPN h2 between the pods, h2c to the app;
//            h2load dials the Service's ClusterIP 10.96.200.10:50051.
//   tsmesh   the same redirects and target; `tsmesh proxy` as uid 1337 in each
//            pod (certificates from a control plane per pod, token file), the
//            Service port with protocol http2 (as appProtocol grpc gives).
// The app (grpc-app.ts) answers every unary call from memory with a message,
// then grpc-status 0 in the trailers; the same in every run.
//
// Load: unary calls, a BENCH_GRPC_BYTES request message (default 64 bytes)
// answered with one of the same size, from h2load (nghttp2) with a gRPC body,
// over BENCH_GRPC_CLIENTS connections (default 10). After a warm-up burst
// per run, two phases in which the runs take turns in one-second slices so
// that all of them see the same machine:
//   fixed rate   open loop: every connection sends on a schedule (h2load
//                --rps), BENCH_RATE calls/s in all (default 1000), up to 16
//                streams in flight per connection; each slice's p50 and p99
//                come from h2load's per-request log; what a run adds over
//                direct is, per percentile, the median over rounds of the
//                difference between its slice and direct's of the same round;
//   saturation   closed loop, 16 streams per connection, calls/s per slice.
// Per sidecar: CPU over its fixed-rate slices, and peak RSS.
//
// CPUs: with two or more, the load, the app and the control planes are pinned
// to CPU 0 and both sidecars to CPU 1, the same for HAProxy and tsmesh.
// Options (environment): BENCH_SECONDS (measured rounds per phase, default
// 10), BENCH_WARMUP_SECONDS (2), BENCH_RATE (1000), BENCH_GRPC_CLIENTS (10),
// BENCH_GRPC_BYTES (64), BENCH_PIN=0, BENCH_NICE, BENCH_KEEP=1 (keep the
// working folder: configs, certificates, logs).
//
// Ends with one machine-readable line:
//   bench:grpc throughput_vs_haproxy=<r> added_p99_vs_haproxy=<r> throughput_vs_direct=<r> added_p99_ms=<n> rss_mb=<n>
// Needs root, iproute2, iptables, util-linux, curl, h2load (nghttp2-client) and haproxy.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, memory, peakMemory, percentile, type Memory } from './measure.js';
import type { SidecarTls } from './haproxy.js';
import { ADDRESSES, REPO, type BenchNet, type Started } from './topology.js';
import { BenchPods, envNumber, idOf, INBOUND_PORT, LOAD, median, NAMESPACE, OUTBOUND_PORT, PIN, ratio, SIDECAR, waitFor } from './pods.js';
import { netnsUnavailable } from '../../lib/netns.js';

const ROUNDS = envNumber('BENCH_SECONDS', 10, true);
const WARM_UP = envNumber('BENCH_WARMUP_SECONDS', 2, true);
const RATE = envNumber('BENCH_RATE', 1000, true);
const CLIENTS = envNumber('BENCH_GRPC_CLIENTS', 10, true);
const MESSAGE_BYTES = envNumber('BENCH_GRPC_BYTES', 64, true);
const STREAMS = 16;
const SLICE_S = 1;

const APP_PORT = 50051;
const METHOD = '/tsmesh.bench.Echo/Unary';
const DIRECT_URL = `http://${ADDRESSES.server}:${APP_PORT}${METHOD}`;
const SERVICE_URL = `http://${ADDRESSES.clusterIp}:${APP_PORT}${METHOD}`;

interface Slice {
  calls: number;
  failed: number;
  p50: number;
  p99: number;
}

interface Run {
  name: 'direct' | 'haproxy' | 'tsmesh';
  net: BenchNet;
  url: string;
  sidecars: Started[];
  fixed: Slice[];
  /** Every fixed-rate call's latency (ms), for the pooled percentiles. */
  latencies: number[];
  saturation: { calls: number; failed: number; seconds: number }[];
  fixedCpuSeconds: number[];
  memory: Memory[];
}

const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

/** HAProxy carrying h2c in and h2 over TLS 1.3 between the pods: the client pod's side. */
function haproxyClient(server: string, tls: SidecarTls): string {
  return `${haproxyCommon()}
frontend outbound
  bind 0.0.0.0:${OUTBOUND_PORT} proto h2
  default_backend mesh

backend mesh
  http-reuse always
  server upstream ${server}:${APP_PORT} ssl verify required ca-file ${tls.bundle} crt ${tls.certAndKey} ssl-min-ver TLSv1.3 alpn h2 pool-max-conn 256 pool-purge-delay 60s
`;
}

/** The server pod's side: TLS 1.3 with ALPN h2 and a client certificate in, h2c to the app. */
function haproxyServer(tls: SidecarTls): string {
  return `${haproxyCommon()}
frontend inbound
  bind 0.0.0.0:${INBOUND_PORT} ssl crt ${tls.certAndKey} ca-file ${tls.bundle} verify required ssl-min-ver TLSv1.3 alpn h2
  default_backend app

backend app
  http-reuse always
  server app 127.0.0.1:${APP_PORT} proto h2 pool-max-conn 256 pool-purge-delay 60s
`;
}

function haproxyCommon(): string {
  return `global
  nbthread 1
  maxconn 4096
  log stderr format short local0 err

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s
`;
}

class GrpcBench extends BenchPods {
  constructor() {
    super('bench-grpc');
  }

  async prepare(): Promise<{ client: SidecarTls; server: SidecarTls }> {
    const tls = await this.prepareMesh();
    // One gRPC message: the 5-byte prefix (not compressed, its length), then the bytes.
    const message = Buffer.alloc(5 + MESSAGE_BYTES, 'q');
    message[0] = 0;
    message.writeUInt32BE(MESSAGE_BYTES, 1);
    writeFileSync(this.path('call.grpc'), message);
    const echo = {
      name: 'echo',
      namespace: NAMESPACE,
      clusterIPs: [ADDRESSES.clusterIp],
      ports: [{ port: APP_PORT, name: 'grpc', protocol: 'http2', targetPort: APP_PORT }],
      endpoints: [{ address: ADDRESSES.server, identity: idOf('server') }],
    };
    this.proxyConfig('client-proxy.json', { services: [echo], inbound: {} });
    this.proxyConfig('server-proxy.json', { services: [], inbound: { mtlsMode: 'STRICT' } });
    return tls;
  }

  /** One h2load run from the client pod; its per-call log is kept in `log` when given. */
  async h2load(net: BenchNet, url: string, args: readonly string[], log?: string): Promise<{ calls: number; failed: number; seconds: number; out: string }> {
    const command = ['h2load', '-c', String(CLIENTS), '-m', String(STREAMS), '-d', this.path('call.grpc'), '-H', 'content-type: application/grpc', '-H', 'te: trailers', ...args];
    if (log) command.push(`--log-file=${log}`);
    command.push(url);
    const r = await net.exec(net.client, command, LOAD, 120_000);
    if (r.code !== 0) throw new Error(`h2load exited ${r.code}: ${r.stderr.trim()} ${r.stdout.trim().split('\n').slice(-8).join(' | ')}`);
    const done = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(r.stdout);
    const finished = /finished in ([\d.]+)(m?s),/.exec(r.stdout);
    const codes = /status codes: (\d+) 2xx/.exec(r.stdout);
    if (!done || !finished || !codes) throw new Error(`cannot read h2load's report:\n${r.stdout}`);
    const seconds = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1);
    const ok = Number(codes[1]);
    return { calls: Number(done[1]), failed: Number(done[1]) - ok + Number(done[3]) + Number(done[4]), seconds, out: r.stdout };
  }

  async startApp(net: BenchNet, name: string): Promise<Started> {
    const app = net.start(`app-${name}`, net.server, [process.execPath, '--import', 'tsx', join(REPO, 'proxy', 'bench', 'grpc-app.ts'), String(APP_PORT), String(MESSAGE_BYTES)], this.path(`app-${name}.log`), LOAD);
    await waitFor(`the app of the ${name} run`, async () => readFileSync(app.log, 'utf8').includes('ready'), 30_000, [app]);
    return app;
  }

  async startTsmeshPair(net: BenchNet): Promise<Started[]> {
    await this.startControlPlanes(net);
    const server = this.startTsmeshProxy(net, 'tsmesh-server', net.server, 'server', ADDRESSES.server, 'server-proxy.json');
    const client = this.startTsmeshProxy(net, 'tsmesh-client', net.client, 'client', ADDRESSES.client, 'client-proxy.json');
    await this.waitReady(net, [
      [server, net.server],
      [client, net.client],
    ]);
    return [client, server];
  }

  /** A few calls must go through before a run is measured. */
  async waitThrough(what: string, net: BenchNet, url: string, logs: Started[]): Promise<void> {
    await waitFor(what, async () => (await this.h2load(net, url, ['-n', String(CLIENTS)]).catch(() => ({ failed: 1, calls: 0 }))).failed === 0, 20_000, logs);
  }

}

/** The calls of one fixed-rate slice, from h2load's log (start us, status, duration us); the first 100 ms, connections opening, left out. */
function readSlice(log: string): { latencies: number[]; failed: number } {
  const rows = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t').map(Number) as [number, number, number]);
  const first = Math.min(...rows.map((r) => r[0]));
  const kept = rows.filter((r) => r[0] - first >= 100_000);
  return { latencies: kept.map((r) => r[2] / 1000), failed: rows.filter((r) => r[1] !== 200).length };
}

async function measure(bench: GrpcBench, runs: Run[]): Promise<void> {
  const perClient = Math.max(1, Math.round(RATE / CLIENTS));
  console.log(`warming up (${WARM_UP} s of closed-loop load per run) ...`);
  for (const r of runs) await bench.h2load(r.net, r.url, ['-D', String(WARM_UP)]);
  console.log(`fixed rate: ${perClient * CLIENTS} calls/s, ${WARM_UP} + ${ROUNDS} rounds ...`);
  for (let round = 0; round < WARM_UP + ROUNDS; round++) {
    for (const r of runs) {
      const before = r.sidecars.map((s) => cpuSeconds(s.pid));
      const log = bench.path(`fixed-${r.name}.log`);
      const h = await bench.h2load(r.net, r.url, ['--rps', String(perClient), '-D', String(SLICE_S)], log);
      if (round < WARM_UP) continue;
      const { latencies, failed } = readSlice(log);
      const sorted = Float64Array.from(latencies).sort();
      r.fixed.push({ calls: h.calls, failed: failed + h.failed, p50: percentile(sorted, 50), p99: percentile(sorted, 99) });
      for (const l of latencies) r.latencies.push(l);
      r.sidecars.forEach((s, j) => (r.fixedCpuSeconds[j]! += cpuSeconds(s.pid) - before[j]!));
      r.memory = r.sidecars.map((s, j) => peakMemory(r.memory[j], memory(s.pid)));
    }
  }
  console.log(`saturation: ${ROUNDS} rounds ...`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of runs) {
      const h = await bench.h2load(r.net, r.url, ['-D', String(SLICE_S)]);
      r.saturation.push({ calls: h.calls, failed: h.failed, seconds: h.seconds });
    }
  }
  const failed = runs.filter((r) => r.fixed.some((s) => s.failed > 0) || r.saturation.some((s) => s.failed > 0));
  if (failed.length) throw new Error(`calls failed in ${failed.map((r) => r.name).join(', ')}`);
}

function report(runs: [Run, Run, Run], loadBefore: number): void {
  const [direct, haproxy, tsmesh] = runs;
  const added = (r: Run, p: 'p50' | 'p99'): number => median(r.fixed.map((s, i) => s[p] - direct.fixed[i]![p]));
  const throughput = (r: Run): number => r.saturation.reduce((s, x) => s + x.calls, 0) / r.saturation.reduce((s, x) => s + x.seconds, 0);
  const pooled = (r: Run, p: number): number => percentile(Float64Array.from(r.latencies).sort(), p);
  const calls = (r: Run): number => r.fixed.reduce((s, x) => s + x.calls, 0);
  const perKrps = (r: Run, i: number): number => r.fixedCpuSeconds[i]! / (calls(r) / 1000);
  const perSidecar = (r: Run, cell: (i: number) => string): string => (r.sidecars.length ? r.sidecars.map((_, i) => cell(i)).join(' / ') : '-');
  const rows: [string, (r: Run) => string][] = [
    ['saturation throughput (calls/s)', (r) => f(throughput(r), 0)],
    [`${RATE} calls/s p50 / p99 (ms)`, (r) => `${f(pooled(r, 50))} / ${f(pooled(r, 99))}`],
    ['added p50 / p99 over direct (ms, median of rounds)', (r) => (r === direct ? '-' : `${f(added(r, 'p50'))} / ${f(added(r, 'p99'))}`)],
    ['CPU per 1000 calls/s, per sidecar (cores)', (r) => perSidecar(r, (i) => f(perKrps(r, i), 3))],
    [`RSS per sidecar at ${RATE} calls/s, peak (MB)`, (r) => perSidecar(r, (i) => f(r.memory[i]!.rssMb, 1))],
  ];
  const w0 = Math.max(...rows.map(([l]) => l.length)) + 2;
  console.log(
    `\ngRPC unary, ${MESSAGE_BYTES} B -> ${MESSAGE_BYTES} B (h2load, ${CLIENTS} connections, up to ${STREAMS} streams each). The runs take turns in ${SLICE_S} s slices, ${ROUNDS} measured rounds per phase.` +
      `\nSidecar figures are client / server. CPUs: ${PIN ? 'load, app, control planes on CPU 0; sidecars on CPU 1' : 'not pinned'}. tsmesh runs on Node.js ${process.version}.\n`,
  );
  console.log(''.padEnd(w0) + runs.map((r) => r.name.padStart(22)).join(''));
  for (const [label, cell] of rows) console.log(label.padEnd(w0) + runs.map((r) => cell(r).padStart(22)).join(''));
  const vsHaproxy = ratio(throughput(tsmesh), throughput(haproxy));
  const vsDirect = ratio(throughput(tsmesh), throughput(direct));
  // An added p99 of a few hundredths of a millisecond is noise; a floor of 0.05 ms keeps the ratio finite.
  const addedP99 = ratio(Math.max(added(tsmesh, 'p99'), 0), Math.max(added(haproxy, 'p99'), 0.05));
  const rss = Math.max(...tsmesh.memory.map((m) => m.rssMb));
  const load = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  if (loadBefore > 0.5 || load > 1.5) console.log(`\nnote: load average ${f(loadBefore)} before and ${f(load)} after, on ${availableParallelism()} CPUs: other work shared the machine.`);
  console.log(
    `bench:grpc throughput_vs_haproxy=${f(vsHaproxy, 3)} added_p99_vs_haproxy=${f(addedP99, 3)} throughput_vs_direct=${f(vsDirect, 3)} added_p99_ms=${f(added(tsmesh, 'p99'), 3)} rss_mb=${f(rss, 1)}`,
  );
}

async function main(): Promise<number> {
  const why = await netnsUnavailable('the gRPC benchmark', [
    ['ip', 'iproute2'],
    ['setpriv', 'util-linux'],
    ['taskset', 'util-linux'],
    ['iptables-nft-restore', 'iptables'],
    ['curl', 'curl'],
    ['h2load', 'nghttp2-client'],
    ['haproxy', 'haproxy'],
  ]);
  if (why) {
    console.error(`bench:grpc: ${why}`);
    return 1;
  }
  const loadBefore = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const bench = new GrpcBench();
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await bench.destroy();
      if (process.env['BENCH_KEEP'] === '1') console.log(`kept ${bench.work}`);
      else rmSync(bench.work, { recursive: true, force: true });
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void cleanup().finally(() => process.exit(130)));
  try {
    const tls = await bench.prepare();
    const fresh = (name: Run['name'], net: BenchNet, url: string, sidecars: Started[]): Run => ({
      name,
      net,
      url,
      sidecars,
      fixed: [],
      latencies: [],
      saturation: [],
      fixedCpuSeconds: sidecars.map(() => 0),
      memory: [],
    });
    const directNet = await bench.newNet();
    await bench.startApp(directNet, 'direct');
    const direct = fresh('direct', directNet, DIRECT_URL, []);
    await bench.waitThrough('a call to the app', directNet, DIRECT_URL, []);

    const haproxyNet = await bench.newNet();
    const haproxyApp = await bench.startApp(haproxyNet, 'haproxy');
    await bench.meshPods(haproxyNet);
    const hServer = bench.startHaproxy(haproxyNet, 'haproxy-server', haproxyNet.server, haproxyServer(tls.server), SIDECAR);
    const hClient = bench.startHaproxy(haproxyNet, 'haproxy-client', haproxyNet.client, haproxyClient(ADDRESSES.server, tls.client), SIDECAR);
    await bench.waitThrough('a call through the HAProxy pair', haproxyNet, SERVICE_URL, [hClient, hServer, haproxyApp]);
    const haproxy = fresh('haproxy', haproxyNet, SERVICE_URL, [hClient, hServer]);

    const tsmeshNet = await bench.newNet();
    await bench.startApp(tsmeshNet, 'tsmesh');
    await bench.meshPods(tsmeshNet);
    const pair = await bench.startTsmeshPair(tsmeshNet);
    await bench.waitThrough('a call through the tsmesh pair', tsmeshNet, SERVICE_URL, pair);
    const tsmesh = fresh('tsmesh', tsmeshNet, SERVICE_URL, pair);

    const runs: [Run, Run, Run] = [direct, haproxy, tsmesh];
    for (const r of runs) console.log(`${r.name.padEnd(8)} ${r.net.client} -> ${r.net.server}: ${r.url}`);
    await measure(bench, runs);
    report(runs, loadBefore);
    return 0;
  } catch (e) {
    console.error(`bench:grpc: ${(e as Error).message}`);
    if (process.env['BENCH_KEEP'] !== '1') console.error('(BENCH_KEEP=1 keeps the configuration, certificates and logs of a run)');
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
