// npm run bench:sidecar: what a pair of tsmesh sidecars costs, beside a direct
// connection and beside a pair of HAProxy sidecars doing the same mTLS with
// the same CA, in network namespaces this script creates (topology.ts).
//
//   client pod ns (10.244.200.2)                 server pod ns (10.244.200.3)
//   load -> [sidecar :15001] ==== mTLS ====> [sidecar :15006] -> app 127.0.0.1:8080
//
// Four runs, the same load each time, each in its own pair of namespaces:
//   direct   the load dials the app at 10.244.200.3:8080; no redirects, no sidecars.
//   haproxy  `tsmesh init` redirects in both namespaces; HAProxy as uid 1337 on
//            15001 (client) and 15006 (server); the load dials the Service's
//            ClusterIP 10.96.200.10:80, as an app in a meshed pod does.
//   tsmesh   the same redirects and target; `tsmesh proxy` as uid 1337 in each
//            namespace, its certificate from `tsmesh control-plane` (token file).
//   tsmesh-tcp  the same, with the Service port declared opaque TCP: the proxies
//            carry the bytes over mTLS without reading HTTP. Not one of the aims;
//            it shows how much of tsmesh's cost is its HTTP layer and how much
//            the connections and TLS under it, which no HTTP work can remove.
// The app is HAProxy answering a fixed body from memory (haproxy.ts): lighter
// than a Node server, so the load side leaves more of the machine to the
// sidecars, and identical in all three runs.
//
// Load: every request is a POST of a 1 kB body answered with a 1 kB body.
// After a short wrk burst per run (so that the sidecars' code is compiled: a
// cold Node process serves far fewer requests per second than a warm one),
// two phases, in each of which the runs take turns in one-second slices
// (direct, haproxy, tsmesh, tsmesh-tcp, direct, ...) so that all of them see the same
// machine, whatever else it is doing:
//   fixed rate   an open-loop client (open-loop.ts) per run at 1000 requests/s,
//                2 warm-up rounds then 10 measured rounds; a slice ends when
//                its last answer is in, so a run that falls behind drains in
//                its own turn; the latency a run adds over direct is, per
//                percentile, the median over rounds of the difference
//                between its slice and direct's slice of the same round;
//   saturation   wrk, 16 connections, 10 rounds.
// Per sidecar: CPU (utime+stime of all its threads, over its own slices),
// RSS (VmRSS) and USS (Private_Clean+Private_Dirty of smaps_rollup), sampled
// after each of its slices and reported at their peak, for each phase (the
// proxy gives start-up pages back from time to time, lib/file-pages.ts, so a
// single sample could fall just after a release).
//
// CPUs: with two or more, the load, the app and the control planes are pinned
// to CPU 0 and both sidecars to CPU 1, the same for HAProxy and tsmesh; so the
// two sidecars of a run share one core, and wrk runs one thread.
//
// Node: the proxies run on the node that runs this script (process.execPath);
// put another first on PATH to measure it. The figures depend on its version,
// memory above all: measured with this script on a 2-CPU VM, a proxy's RSS at
// 1,000 req/s was 45-47 MB on Node 20.20 and 51-62 MB on Node 24.21, the
// image's runtime (its executable's mapped pages and V8's heap are larger).
//
// Options (environment): BENCH_SECONDS (measured one-second rounds per phase,
// default 10), BENCH_WARMUP_SECONDS (2), BENCH_RATE (1000), BENCH_CONNECTIONS (16),
// BENCH_BODY_BYTES (1024), BENCH_NODE_FLAGS (node flags for the measured tsmesh
// proxies, e.g. "--trace-gc"; their output is in the proxies' logs), BENCH_PIN=0 (no pinning), BENCH_NICE (niceness of
// every process of the benchmark, e.g. -10 on a busy machine), BENCH_KEEP=1
// (keep the working folder: configs, certificates, logs), BENCH_PROFILE=1 or
// a folder: run the tsmesh pair once more after the measured runs, under
// --cpu-prof, and print each proxy's top self-time functions over a
// saturation phase and then over BENCH_RATE req/s, with the client sidecar's
// system calls per request at that rate (strace -c -f; the measured figures
// are never profiled). BENCH_PROFILE_LARGE=1: the saturation profile sends
// the large-body phase's POSTs (BENCH_LARGE_BODY_BYTES) instead.
//
// The fixed-rate phase runs BENCH_P99_REPEATS times (default 3), each with its
// warm-up and BENCH_SECONDS rounds; the added p99 against HAProxy's is taken in
// each repeat and the aim reads their median (the spread is printed). CPU and
// RSS cover every repeat. Then, unless BENCH_EXTRA=0, two more saturation
// phases with no aim: BENCH_WIDE_CONNECTIONS connections (64), and POSTs of
// BENCH_LARGE_BODY_BYTES (16384) answered with the app's usual body.
//
// A/B of two builds of the proxy: BENCH_TSMESH_DIST=<folder> runs the tsmesh
// run's proxies from another tsc output (a folder holding cli/main.js, e.g.
// tsc -p tsconfig.build.json --outDir <folder> in an export of a commit), and
// BENCH_COMPARE=<folder> adds a fifth run, tsmesh-b, whose proxies run that
// build, taking turns with the others; BENCH_COMPARE_FLAGS="<node flags>" adds
// those flags to tsmesh-b's proxies (and adds tsmesh-b on the benchmark's own
// build when BENCH_COMPARE is not set); BENCH_TCP=0 leaves out tsmesh-tcp.
// Ends then with
//   bench:sidecar-ab a_cpu_per_krps=<client>/<server> b_cpu_per_krps=<client>/<server> a_rps=<n> b_rps=<n> a_added_p99_ms=<n> b_added_p99_ms=<n>
//
// Ends with one machine-readable line per aim of issue 29 (ratios to HAProxy's
// figures of the same run, RSS in MB with the Node that ran the proxies):
//   bench:sidecar-aim name=throughput_vs_haproxy value=<r> aim=>=1 meets=<yes|no>
//   bench:sidecar-aim name=cpu_per_krps_vs_haproxy value=<r> tsmesh=<cores> haproxy=<cores> aim=<=1 meets=<yes|no>
//   bench:sidecar-aim name=added_p99_vs_haproxy value=<median r> min=<r> max=<r> repeats=<r,r,r> aim=<=1 meets=<yes|no>
//   bench:sidecar-aim name=rss_mb value=<n> node=<version> aim=<=40 meets=<yes|no>
// one line per extra phase:
//   bench:sidecar-phase phase=<c64|body16k> connections=<n> body_bytes=<n> throughput_vs_haproxy=<r> tsmesh_rps=<n> haproxy_rps=<n> tsmesh_p99_ms=<n> haproxy_p99_ms=<n> tsmesh_us_per_request=<n> haproxy_us_per_request=<n> tsmesh_errors=<n> haproxy_errors=<n>
// (wrk's socket errors, timeouts and non-2xx answers: there, they are printed, not a failure of the run)
// and the summary line of earlier rounds:
//   bench:sidecar throughput_vs_haproxy=<r> added_p99_vs_haproxy=<r> rss_mb=<n> cpu_per_krps=<n>
//
// With --policy, what the traffic-management layers cost instead: three tsmesh
// pairs take turns, one bare, one with the authorization rules below alone
// (tsmesh+authz), and one with every layer on and a policy in force
// (a header route and a 90/10 split, a route timeout, retries with backoff and
// their budget, which buffer each POST body for replay, a circuit breaker on
// failure rate and consecutive failures, a 1 ms delay fault on 1% of requests,
// trace headers, and on the server's inbound 50 authorization rules, L7 and
// L4, DENY, AUDIT and ALLOW, that each request walks: benchPolicies()). Ends with:
//   bench:sidecar-policy throughput_vs_bare=<r> authz_throughput_vs_bare=<r>
//
// With --telemetry, what span export and access logs cost: three tsmesh pairs
// take turns, one bare, one exporting spans at 1% sampling (tracing export on,
// sampling 0.01, for requests that come without trace context, as wrk's do)
// to a real OpenTelemetry Collector in each pod's namespace (test/otelcol's,
// built by bash test/otelcol/build.sh), and one writing an access log line
// per request (mode all) to its stdout, here its log file. Ends with:
//   bench:sidecar-telemetry tracing_throughput_vs_bare=<r> access_log_throughput_vs_bare=<r>
//
// With --churn, what a new connection costs: the app opens a connection per
// request (wrk with Connection: close, BENCH_CONNECTIONS at a time, closed
// loop) to a Service port declared opaque TCP, so every request is a new
// connection between the sidecars: for HAProxy a TLS connection (resumed),
// for tsmesh a stream of a pooled mTLS connection (tsmesh/tcp-mux,
// net/tcp-mux.ts), or a TLS connection of its own where the peer predates
// it. Three runs take turns in one-second
// slices, BENCH_SECONDS rounds after a warm-up: direct, haproxy-tcp (HAProxy
// in mode tcp on both ends, resuming TLS sessions as it does by default:
// ssl-reuse on the client's server line, a session cache and tickets on the
// server's bind; haproxy.ts) and tsmesh-tcp. Ends with one line per run and
// the ratio:
//   bench:sidecar-churn run=<name> connections_per_s=<n> p50_ms=<n> p99_ms=<n> cpu_us_per_connection=<n>
//   bench:sidecar-churn throughput_vs_haproxy=<r> resumed_fraction=<r> handshakes=<n>
// (of the tsmesh client sidecar's outbound handshakes, tsmesh_tls_handshakes_total,
// how many there were over the whole run, warm-up included, and the share resumed).
//
// With --routes, what Gateway API route matching costs: two tsmesh pairs take
// turns, one bare and one whose client runs 50 Gateway API routes on the
// Service's port (gatewayRoutes: path prefixes with header matches, path
// regexes, header regexes, exact paths, query matches behind path prefixes,
// methods) of which the benchmark's POSTs match only the last: every request
// walks the whole table (benchRoutes()). Ends with:
//   bench:sidecar-routes throughput_vs_bare=<r>
// Needs root, iproute2, iptables, util-linux, curl, wrk and haproxy.
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { availableParallelism, tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { clientSidecarConfig, clientTcpSidecarConfig, serverSidecarConfig, serverTcpSidecarConfig, upstreamConfig, type SidecarTls } from './haproxy.js';
import { cpuSeconds, cpuTimes, mainThreadSched, memory, mergeWrk, peakMemory, parseWrkJson, wrkScript, type Memory, type WrkReport, type WrkRun } from './measure.js';
import { formatTop, topSelfTime } from './profile-top.js';
import { ADDRESSES, REPO, unavailable, type BenchNet, type Started } from './topology.js';
import { BenchPods, envNumber, idOf, INBOUND_PORT, LOAD, loadAverage, median, NAMESPACE, OUTBOUND_PORT, PIN, PROXY_UID, ratio, SIDECAR, waitFor } from './pods.js';

const ROUNDS = envNumber('BENCH_SECONDS', 10, true);
const WARM_UP = envNumber('BENCH_WARMUP_SECONDS', 2, true);
const RATE = envNumber('BENCH_RATE', 1000);
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 16, true);
const BODY_BYTES = envNumber('BENCH_BODY_BYTES', 1024, true);
const PROFILE = process.env['BENCH_PROFILE'] ?? '';
/** Times the fixed-rate phase runs; the added p99's aim reads the median of the repeats. */
const P99_REPEATS = envNumber('BENCH_P99_REPEATS', 3, true);
/** BENCH_EXTRA=0: no 64-connection and large-body phases. */
const EXTRA = process.env['BENCH_EXTRA'] !== '0';
const WIDE_CONNECTIONS = envNumber('BENCH_WIDE_CONNECTIONS', 64, true);
const LARGE_BODY_BYTES = envNumber('BENCH_LARGE_BODY_BYTES', 16384, true);
/** Another build's tsc output for the tsmesh run (A), and one for a run of its own, tsmesh-b (B). */
const TSMESH_DIST = process.env['BENCH_TSMESH_DIST'] ?? '';
const COMPARE_DIST = process.env['BENCH_COMPARE'] ?? '';
const COMPARE_FLAGS = (process.env['BENCH_COMPARE_FLAGS'] ?? '').split(' ').filter(Boolean);
const TCP_RUN = process.env['BENCH_TCP'] !== '0';
/** Extra node/V8 flags for the measured tsmesh proxies (e.g. --trace-gc, --max-semi-space-size=4). */
const NODE_FLAGS = (process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);
const POLICY = process.argv.slice(2).includes('--policy');
const TELEMETRY = process.argv.slice(2).includes('--telemetry');
const ROUTES = process.argv.slice(2).includes('--routes');
const CHURN = process.argv.slice(2).includes('--churn');
for (const arg of process.argv.slice(2))
  if (arg !== '--policy' && arg !== '--telemetry' && arg !== '--routes' && arg !== '--churn')
    throw new Error(`bench:sidecar: unknown argument ${JSON.stringify(arg)}; the arguments are --routes, --policy, --telemetry and --churn (options are environment variables, see the top of proxy/bench/bench-sidecar.ts)`);
if (Number(POLICY) + Number(TELEMETRY) + Number(ROUTES) + Number(CHURN) > 1) throw new Error('bench:sidecar: --routes, --policy, --telemetry and --churn each take a run of their own');
if (ROUTES && (POLICY || TELEMETRY || process.argv.length > 3)) throw new Error('bench:sidecar: --routes takes a run of its own');
/** The OpenTelemetry Collector of --telemetry (test/otelcol/build.sh). */
const OTELCOL = join(process.env['TSMESH_OTELCOL_CACHE'] ?? join(import.meta.dirname, '..', '..', 'test', 'otelcol', '.cache'), 'bin', 'otelcol');
const COLLECTOR_PORT = 4318;
const SLICE_MS = 1000;

const APP_PORT = 8080;
const SERVICE_PORT = 80;
// Issue 29's aims: ratios to HAProxy's figures of the same run, and RSS in MB.
const AIM = { throughputVsHaproxy: 1.0, addedP99VsHaproxy: 1.0, rssMb: 40, cpuPerKrpsVsHaproxy: 1.0 };

const WRK_THREADS = PIN ? 1 : 2;

const DIRECT_URL = `http://${ADDRESSES.server}:${APP_PORT}/`;
const SERVICE_URL = `http://${ADDRESSES.clusterIp}:${SERVICE_PORT}/`;

/** Latency percentiles (ms) of one fixed-rate slice. */
interface SliceLatency {
  p50: number;
  p90: number;
  p99: number;
}

interface FixedRate {
  requests: number;
  errors: number;
  firstError?: string;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** One of the runs: its namespaces, what the load dials, its sidecars, and the figures gathered. */
interface Run {
  name: 'direct' | 'haproxy' | 'haproxy-tcp' | 'tsmesh' | 'tsmesh-b' | 'tsmesh-tcp' | 'tsmesh+authz' | 'tsmesh+policy' | 'tsmesh+tracing' | 'tsmesh+access-log' | 'tsmesh+routes';
  net: BenchNet;
  url: string;
  sidecars: Started[];
  fixed?: FixedRate;
  /** Each recorded fixed-rate round's own percentiles, in order, over every repeat of the phase (ROUNDS each). */
  fixedRounds: SliceLatency[];
  /** Each repeat's pooled figures. */
  fixedRepeats: FixedRate[];
  /** CPU seconds per sidecar over the run's recorded fixed-rate slices. */
  fixedCpuSeconds: number[];
  memory: Memory[];
  wrkRuns: WrkRun[];
  saturationCpuSeconds: number[];
  memoryAfterSaturation: Memory[];
  /** The extra saturation phases (64 connections, large bodies), by phase name. */
  extra: Map<string, { wrkRuns: WrkRun[]; cpuSeconds: number[] }>;
}

/** A running open-loop.ts, driven slice by slice over its stdin. */
class OpenLoopClient {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiting: (() => void) | undefined;
  private err = '';
  private exited = false;

  constructor(private readonly run: Run) {
    const command = [process.execPath, '--import', 'tsx', join(REPO, 'proxy', 'bench', 'open-loop.ts'), run.url, String(RATE), String(BODY_BYTES), String(SLICE_MS)];
    this.child = run.net.spawnPiped(run.net.client, command, LOAD);
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      this.lines.push(l);
      this.waiting?.();
    });
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.err += s));
    this.child.stdin.on('error', () => undefined);
    this.child.on('exit', () => {
      this.exited = true;
      this.waiting?.();
    });
  }

  /** The next line of output, which must start with `prefix`. */
  async line(prefix: string, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.shift();
      if (l !== undefined) {
        if (l.startsWith(prefix)) return l;
        throw new Error(`${this.run.name}: the open-loop client printed ${JSON.stringify(l)}, expected ${prefix}`);
      }
      if (this.exited) throw new Error(`${this.run.name}: the open-loop client exited: ${this.err.trim()}`);
      if (Date.now() > deadline) throw new Error(`${this.run.name}: the open-loop client did not print ${prefix} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = undefined;
    }
  }

  /** One slice; a recorded one gives its own percentiles. */
  async slice(recorded: boolean): Promise<SliceLatency | undefined> {
    this.child.stdin.write(recorded ? 'measure\n' : 'warm\n');
    const line = await this.line('done');
    return recorded ? (JSON.parse(line.slice('done'.length)) as SliceLatency) : undefined;
  }

  async end(): Promise<FixedRate> {
    this.child.stdin.write('end\n');
    return JSON.parse(await this.line('{')) as FixedRate;
  }

  kill(): void {
    if (!this.exited && this.child.pid !== undefined) process.kill(this.child.pid, 'SIGKILL');
  }
}

class Bench extends BenchPods {
  constructor() {
    super('bench-sidecar');
  }

  async httpCode(net: BenchNet, url: string): Promise<string> {
    const r = await net.exec(net.client, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', '-X', 'POST', '--data-binary', `@${this.path('body.bin')}`, '-H', 'content-type: application/octet-stream', url], LOAD, 5000);
    return r.stdout.trim();
  }

  async waitThrough(what: string, net: BenchNet, url: string, logs: Started[]): Promise<void> {
    await waitFor(what, async () => (await this.httpCode(net, url)) === '200', 20_000, logs);
  }

  /** wrk for `seconds`; `script` post.lua (keep-alive) or churn.lua (a connection per request). */
  async wrk(net: BenchNet, url: string, seconds: number, script = 'post.lua', connections = CONNECTIONS): Promise<WrkRun> {
    const r = await net.exec(net.client, ['wrk', `-t${WRK_THREADS}`, `-c${connections}`, `-d${seconds}s`, '-s', this.path(script), url], LOAD, (seconds + 30) * 1000);
    if (r.code !== 0) throw new Error(`wrk exited ${r.code}: ${r.stderr.trim()}`);
    return parseWrkJson(r.stdout);
  }

  /**
   * The fixed-rate phase: one open-loop client per run, given slices in turn
   * (WARM_UP unrecorded rounds, then ROUNDS recorded ones); a slice ends when
   * its last answer is in, so a run that falls behind drains on its own time.
   * Each run's sidecars' CPU is summed over its recorded slices.
   */
  async fixedRatePhase(runs: Run[]): Promise<void> {
    const clients = runs.map((r) => new OpenLoopClient(r));
    try {
      await Promise.all(clients.map((c) => c.line('ready')));
      for (let round = 0; round < WARM_UP + ROUNDS; round++) {
        const recorded = round >= WARM_UP;
        for (const [i, r] of runs.entries()) {
          const before = r.sidecars.map((s) => cpuSeconds(s.pid));
          const latency = await clients[i]!.slice(recorded);
          if (!recorded) continue;
          r.fixedRounds.push(latency!);
          r.sidecars.forEach((s, j) => (r.fixedCpuSeconds[j]! += cpuSeconds(s.pid) - before[j]!));
          r.memory = r.sidecars.map((s, j) => peakMemory(r.memory[j], memory(s.pid)));
        }
      }
      for (const [i, r] of runs.entries()) r.fixedRepeats.push(await clients[i]!.end());
      for (const r of runs) r.fixed = pooledFixed(r.fixedRepeats);
    } finally {
      for (const c of clients) c.kill();
    }
  }

  /** The saturation phase: wrk (`script`) for one slice per run, in turn, ROUNDS times; CPU read around each slice. */
  async saturationPhase(runs: Run[], script = 'post.lua'): Promise<void> {
    for (const r of runs) r.saturationCpuSeconds = r.sidecars.map(() => 0);
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of runs) {
        const before = r.sidecars.map((s) => cpuSeconds(s.pid));
        r.wrkRuns.push(await this.wrk(r.net, r.url, SLICE_MS / 1000, script));
        r.sidecars.forEach((s, j) => (r.saturationCpuSeconds[j]! += cpuSeconds(s.pid) - before[j]!));
        r.memoryAfterSaturation = r.sidecars.map((s, j) => peakMemory(r.memoryAfterSaturation[j], memory(s.pid)));
      }
    }
  }

  /**
   * An extra saturation phase `name` (no aim): wrk with `script` and
   * `connections` for one slice per run, in turn, ROUNDS times.
   */
  async extraPhase(runs: Run[], name: string, script: string, connections: number): Promise<void> {
    for (const r of runs) r.extra.set(name, { wrkRuns: [], cpuSeconds: r.sidecars.map(() => 0) });
    for (const r of runs) await this.wrk(r.net, r.url, 1, script, connections);
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of runs) {
        const e = r.extra.get(name)!;
        const before = r.sidecars.map((s) => cpuSeconds(s.pid));
        e.wrkRuns.push(await this.wrk(r.net, r.url, SLICE_MS / 1000, script, connections));
        r.sidecars.forEach((s, j) => (e.cpuSeconds[j]! += cpuSeconds(s.pid) - before[j]!));
      }
    }
  }

  async prepare(): Promise<{ client: SidecarTls; server: SidecarTls }> {
    const haproxyTls = await this.prepareMesh();
    writeFileSync(this.path('body.bin'), Buffer.alloc(BODY_BYTES, 'b'));
    writeFileSync(this.path('post.lua'), wrkScript(BODY_BYTES));
    writeFileSync(this.path('post-large.lua'), wrkScript(LARGE_BODY_BYTES));
    // The app closes after each answer; wrk then opens a new connection for the next request.
    writeFileSync(this.path('churn.lua'), wrkScript(BODY_BYTES) + 'wrk.headers["Connection"] = "close"\n');
    const upstream = [upstreamService('upstream', ADDRESSES.clusterIp)];
    // The server side is the same whether the client carries the port as HTTP or as opaque TCP.
    const server = { services: [], inbound: { mtlsMode: 'STRICT' } };
    this.proxyConfig('client-proxy.json', { services: upstream, inbound: {} });
    this.proxyConfig('server-proxy.json', server);
    this.proxyConfig('client-tcp-proxy.json', { services: [upstreamService('upstream', ADDRESSES.clusterIp, 'tcp')], inbound: {} });
    this.proxyConfig('server-tcp-proxy.json', server);
    if (POLICY) {
      const authorized = { services: [], inbound: { mtlsMode: 'STRICT', authorization: benchPolicies() } };
      this.proxyConfig('client-authz-proxy.json', { services: upstream, inbound: {} });
      this.proxyConfig('server-authz-proxy.json', authorized);
      this.proxyConfig('client-policy-proxy.json', { services: policyServices(), inbound: {} });
      this.proxyConfig('server-policy-proxy.json', authorized);
    }
    if (ROUTES) {
      this.proxyConfig('client-routes-proxy.json', { services: [{ ...upstreamService('upstream', ADDRESSES.clusterIp), gatewayRoutes: [{ port: SERVICE_PORT, routes: benchRoutes() }] }], inbound: {} });
      this.proxyConfig('server-routes-proxy.json', server);
    }
    if (TELEMETRY) {
      const tracing = { export: true, collector: `http://127.0.0.1:${COLLECTOR_PORT}/v1/traces`, sampling: 0.01 };
      for (const [suffix, mesh] of [
        ['-tracing', { tracing }],
        ['-accesslog', { accessLog: 'all' }],
      ] as const) {
        this.proxyConfig(`client${suffix}-proxy.json`, { services: upstream, inbound: {}, mesh });
        this.proxyConfig(`server${suffix}-proxy.json`, { ...server, mesh });
      }
    }
    return haproxyTls;
  }

  /** The app: the same HAProxy answering from memory, in every run's server namespace. */
  async startApp(net: BenchNet, run: string): Promise<Started> {
    const app = this.startHaproxy(net, `app-${run}`, net.server, upstreamConfig(APP_PORT, this.path('body.bin')), LOAD);
    await waitFor(
      `the app of the ${run} run`,
      async () => (await this.httpCode(net, DIRECT_URL)) === '200',
      20_000,
      [app],
    );
    return app;
  }

  /** A collector in each namespace on loopback, for the tsmesh proxies' spans (--telemetry); it writes what it receives to the working folder. */
  async startCollectors(net: BenchNet): Promise<void> {
    for (const [side, ns] of [['client', net.client], ['server', net.server]] as const) {
      const name = `otelcol-${side}`;
      const config = this.sidecarFile(
        `${name}.yaml`,
        ['receivers:', '  otlp:', '    protocols:', '      http:', `        endpoint: 127.0.0.1:${COLLECTOR_PORT}`, 'exporters:', '  file:', `    path: ${this.path(`${name}-spans.jsonl`)}`,
          'service:', '  telemetry:', '    metrics:', '      level: none', '  pipelines:', '    traces:', '      receivers: [otlp]', '      exporters: [file]', ''].join('\n'),
        0o644,
      );
      const collector = net.start(name, ns, [OTELCOL, `--config=file:${config}`], this.path(`${name}.log`), LOAD);
      await waitFor(
        name,
        async () => (await net.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', `http://127.0.0.1:${COLLECTOR_PORT}/v1/traces`])).stdout !== '000',
        30_000,
        [collector],
      );
    }
  }

  /**
   * `config`: '' for the bare configuration, '-policy' for the one with every layer on, '-tcp' for the port as opaque TCP.
   * `dist`: the tsc output the proxies run ('' for the benchmark's own build).
   */
  async startTsmeshPair(net: BenchNet, extraNodeFlags: string[] = [], suffix = '', config = '', dist = ''): Promise<Started[]> {
    const start = (name: string, ns: string, sa: 'client' | 'server', ip: string): Started => {
      const own = this.tsmesh[1]!;
      if (dist !== '') this.tsmesh[1] = join(dist, 'cli', 'main.js');
      try {
        return this.startTsmeshProxy(net, name, ns, sa, ip, `${sa}${config}-proxy.json`, extraNodeFlags);
      } finally {
        this.tsmesh[1] = own;
      }
    };
    const server = start(`tsmesh-server${suffix}`, net.server, 'server', ADDRESSES.server);
    const client = start(`tsmesh-client${suffix}`, net.client, 'client', ADDRESSES.client);
    await this.waitReady(net, [
      [server, net.server],
      [client, net.client],
    ]);
    await this.waitThrough('a request through the tsmesh pair', net, SERVICE_URL, [client, server]);
    return [client, server];
  }
}

/** The Service the load calls, one endpoint: the server pod. */
function upstreamService(name: string, clusterIp: string, protocol: 'http' | 'tcp' = 'http'): Record<string, unknown> {
  return {
    name,
    namespace: NAMESPACE,
    clusterIPs: [clusterIp],
    ports: [{ port: SERVICE_PORT, name: protocol, protocol, targetPort: APP_PORT }],
    endpoints: [{ address: ADDRESSES.server, identity: idOf('server') }],
  };
}

/**
 * The same Service with every traffic layer on: a header route the load never
 * matches (so every request walks the match list), then a 90/10 split to a
 * second Service on the same endpoint, with a timeout, retries and their
 * budget, a circuit breaker and a delay fault. None of it turns a request of
 * the benchmark into an error: the measured cost is the layers' own.
 */
function policyServices(): Record<string, unknown>[] {
  const trafficPolicy = {
    name: 'bench-policy',
    timeout: '5s',
    retries: { attempts: 3, perTryTimeout: '1s', backoff: { base: '5ms', max: '50ms' }, retryOn: ['5xx', 'connect-failure', 'reset'], budget: { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' } },
    circuitBreaker: { consecutiveFailures: 5, failureRate: { threshold: 0.5, window: '10s', minRequests: 20 }, ejectionTime: '10s', maxEjectionPercent: 50 },
    faults: { delay: { percent: 1, duration: '1ms' } },
    routes: [
      { name: 'debug', match: { headers: { 'x-bench-debug': 'on' } }, backends: [{ service: 'upstream-canary', weight: 100 }] },
      { name: 'split', match: { pathPrefix: '/' }, backends: [{ service: 'upstream', weight: 90 }, { service: 'upstream-canary', weight: 10 }] },
    ],
  };
  return [{ ...upstreamService('upstream', ADDRESSES.clusterIp), trafficPolicy }, upstreamService('upstream-canary', ADDRESSES.canaryClusterIp)];
}

/**
 * 50 Gateway API routes on the Service's port, in the precedence order the
 * control plane gives them, as a busy Service's HTTPRoutes flatten: 49 that
 * the benchmark's requests (POST /, no query, wrk's few fields) do not match,
 * each failing on a different kind of match, and last the one that does
 * (a regex path, the method and a header regex). Every request tries all 50.
 */
function benchRoutes(): Record<string, unknown>[] {
  const upstream = [{ service: 'upstream', weight: 1 }];
  const kinds = [
    (i: number) => ({ pathPrefix: `/api/v${i}`, headers: { 'x-tenant': `tenant-${i}` } }),
    (i: number) => ({ pathRegex: `/items/${i}/[0-9]+(/details)?` }),
    (i: number) => ({ pathPrefix: '/', headerRegex: { 'x-user': `user-${i}-[a-z]+` } }),
    (i: number) => ({ pathExact: `/reports/${i}` }),
    (i: number) => ({ pathPrefix: `/search-${i}`, queryParams: { q: `term-${i}` }, queryParamRegex: { page: '[0-9]+' } }),
    (i: number) => ({ pathPrefix: '/', method: 'DELETE', headers: { 'x-shard': `${i}` } }),
  ];
  const routes = Array.from({ length: 49 }, (_, i) => ({ name: `httproute/${NAMESPACE}/bench-${i}/rule-0`, match: kinds[i % kinds.length]!(i), backends: upstream }));
  return [...routes, { name: `httproute/${NAMESPACE}/bench-last/rule-0`, match: { pathRegex: '/.*', method: 'POST', headerRegex: { 'content-length': '[0-9]+' } }, backends: upstream }];
}

/**
 * 50 authorization rules on the server's inbound, none of which denies the
 * benchmark's requests, which walk every one that could apply to them:
 * 10 DENY rules by path prefix (any caller: read on every request, with the
 * path normalized), 5 AUDIT rules by method and path, and 35 ALLOW rules:
 * 15 L4 and 10 L7 rules for other callers (sorted out once per connection),
 * 9 L7 rules for the client that do not match, and last the one that does
 * (POST under /).
 */
function benchPolicies(): Record<string, unknown>[] {
  const n = (count: number, rule: (i: number) => object): object[] => Array.from({ length: count }, (_, i) => rule(i));
  const client = [`${NAMESPACE}/client`];
  const rules = [
    ...n(15, (i) => ({ serviceAccounts: [`${NAMESPACE}/other-${i}`], ports: [9000 + i] })),
    ...n(10, (i) => ({ serviceAccounts: [`${NAMESPACE}/other-${i}`], methods: ['GET'], pathPrefixes: [`/other-${i}`] })),
    ...n(9, (i) => ({ serviceAccounts: client, methods: ['GET', 'PUT'], pathPrefixes: [`/reports-${i}`], headers: { 'x-tenant': `t${i}` } })),
    { serviceAccounts: client, methods: ['POST'], pathPrefixes: ['/'] },
  ];
  return [
    { name: 'bench-deny', action: 'DENY', rules: n(10, (i) => ({ pathPrefixes: [`/admin-${i}`] })) },
    { name: 'bench-audit', action: 'AUDIT', rules: n(5, (i) => ({ methods: ['DELETE'], paths: [`/audit-${i}`] })) },
    { name: 'bench-callers', rules },
  ];
}

function report(runs: Run[], load: [number, number]): void {
  const [direct, haproxy, tsmesh] = runs as [Run, Run, Run];
  const tcp = runs.find((r) => r.name === 'tsmesh-tcp');
  const b = runs.find((r) => r.name === 'tsmesh-b');
  const sat = new Map(runs.map((r) => [r, mergeWrk(r.wrkRuns)] as const));
  const satOf = (r: Run): WrkReport => sat.get(r)!;
  const fixedOf = (r: Run): FixedRate => r.fixed!;
  const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  // What a run adds to a percentile: the median over rounds of its round's figure less direct's in the
  // same round. A hiccup of the machine lands in one run's slice; pooled percentiles of the runs then
  // differ by it (direct's pooled p99 has come out above HAProxy's), the median of the rounds does not.
  const added = (r: Run, p: 'p50' | 'p90' | 'p99'): number => median(r.fixedRounds.map((round, i) => round[p] - direct.fixedRounds[i]![p]));
  const perSidecar = (r: Run, cell: (i: number) => string): string => (r.sidecars.length ? r.sidecars.map((_, i) => cell(i)).join(' / ') : '-');
  const satCores = (r: Run, i: number): number => r.saturationCpuSeconds[i]! / (r.wrkRuns.reduce((s, w) => s + w.durationUs, 0) / 1e6);
  // CPU seconds per 1000 requests is the cores a sidecar needs per 1000 requests per second.
  const perKrps = (r: Run, i: number): number => r.fixedCpuSeconds[i]! / (fixedOf(r).requests / 1000);
  const rows: [string, (r: Run) => string][] = [
    ['saturation throughput (req/s)', (r) => f(satOf(r).requestsPerSecond, 0)],
    ['saturation p50 / p99 (ms)', (r) => `${f(satOf(r).p50)} / ${f(satOf(r).p99)}`],
    ['saturation CPU per sidecar (cores)', (r) => perSidecar(r, (i) => f(satCores(r, i)))],
    [`${RATE} req/s p50 / p90 / p99 (ms)`, (r) => `${f(fixedOf(r).p50)} / ${f(fixedOf(r).p90)} / ${f(fixedOf(r).p99)}`],
    [`added p50 / p90 / p99 over direct (ms, median of rounds)`, (r) => (r === direct ? '-' : `${f(added(r, 'p50'))} / ${f(added(r, 'p90'))} / ${f(added(r, 'p99'))}`)],
    [`CPU per sidecar at ${RATE} req/s (cores)`, (r) => perSidecar(r, (i) => f(perKrps(r, i) * (RATE / 1000), 3))],
    ['CPU per 1000 req/s, per sidecar (cores)', (r) => perSidecar(r, (i) => f(perKrps(r, i), 3))],
    [`RSS per sidecar at ${RATE} req/s, peak (MB)`, (r) => perSidecar(r, (i) => f(r.memory[i]!.rssMb, 1))],
    [`USS per sidecar at ${RATE} req/s, peak (MB)`, (r) => perSidecar(r, (i) => f(r.memory[i]!.ussMb, 1))],
    ['RSS per sidecar at saturation, peak (MB)', (r) => perSidecar(r, (i) => f(r.memoryAfterSaturation[i]!.rssMb, 1))],
  ];
  const w0 = Math.max(...rows.map(([l]) => l.length)) + 2;
  const w = 26;
  const nice = process.env['BENCH_NICE'] ? `; every process at niceness ${process.env['BENCH_NICE']}` : '';
  console.log(
    `\nPOST ${BODY_BYTES} B -> ${BODY_BYTES} B. The ${runs.length} runs take turns in ${SLICE_MS / 1000} s slices, ${ROUNDS} measured rounds per phase;` +
      `\nsaturation: wrk, ${WRK_THREADS} thread(s), ${CONNECTIONS} connections; fixed rate: open loop, ${RATE} req/s.` +
      `\nSidecar figures are client / server. CPUs: ${PIN ? 'load, app, control planes on CPU 0; sidecars on CPU 1' : 'not pinned'}${nice}.` +
      `\ntsmesh runs on Node.js ${process.version} (${process.execPath}).\n`,
  );
  console.log(''.padEnd(w0) + runs.map((r) => r.name.padStart(w)).join(''));
  for (const [label, cell] of rows) console.log(label.padEnd(w0) + runs.map((r) => cell(r).padStart(w)).join(''));

  const throughput = ratio(satOf(tsmesh).requestsPerSecond, satOf(haproxy).requestsPerSecond);
  // An added p99 of a few hundredths of a millisecond is noise; a floor of 0.05 ms keeps the ratio finite.
  const p99Ratio = (rounds: (r: Run) => number): number => ratio(Math.max(rounds(tsmesh), 0), Math.max(rounds(haproxy), 0.05));
  const addedP99 = p99Ratio((r) => added(r, 'p99'));
  // Each repeat of the fixed-rate phase on its own: the median over its rounds, as above.
  const repeats = tsmesh.fixedRepeats.map((_, k) =>
    p99Ratio((r) => median(r.fixedRounds.slice(k * ROUNDS, (k + 1) * ROUNDS).map((round, i) => round.p99 - direct.fixedRounds[k * ROUNDS + i]!.p99))),
  );
  const p99Median = median(repeats);
  const rss = Math.max(...tsmesh.memory.map((m) => m.rssMb));
  const cpuPerKrps = Math.max(...tsmesh.sidecars.map((_, i) => perKrps(tsmesh, i)));
  const haproxyRss = Math.max(...haproxy.memory.map((m) => m.rssMb));
  const haproxyCpu = Math.max(...haproxy.sidecars.map((_, i) => perKrps(haproxy, i)));
  const cpuRatio = ratio(cpuPerKrps, haproxyCpu);
  const mark = (ok: boolean): string => (ok ? 'meets' : 'misses');
  const spread = `${f(Math.min(...repeats))}-${f(Math.max(...repeats))}`;
  console.log('\ntsmesh against HAProxy and the aims:');
  console.log(`  throughput               ${f(throughput).padStart(8)}x HAProxy's      aim >= ${AIM.throughputVsHaproxy}x: ${mark(throughput >= AIM.throughputVsHaproxy)}`);
  console.log(
    `  CPU per 1000 req/s       ${f(cpuRatio).padStart(8)}x HAProxy's      aim <= ${AIM.cpuPerKrpsVsHaproxy}x: ${mark(cpuRatio <= AIM.cpuPerKrpsVsHaproxy)}; ${f(cpuPerKrps, 3)} cores against ${f(haproxyCpu, 3)}`,
  );
  console.log(
    `  added p99 at ${RATE} req/s ${f(p99Median).padStart(8)}x HAProxy's      aim <= ${AIM.addedP99VsHaproxy}x: ${mark(p99Median <= AIM.addedP99VsHaproxy)}; median of ${repeats.length} repeats of the phase (${repeats.map((x) => f(x)).join(', ')}; spread ${spread}), ${f(addedP99)}x over all their rounds`,
  );
  console.log(`  RSS per proxy            ${f(rss, 1).padStart(8)} MB              aim <= ${AIM.rssMb} MB: ${mark(rss <= AIM.rssMb)} on Node.js ${process.version}; HAProxy's ${f(haproxyRss, 1)} MB (${f(ratio(rss, haproxyRss))}x)`);
  if (load[0] > 0.5)
    console.log(`  note: load average ${f(load[0])} before the run and ${f(load[1])} after, on ${availableParallelism()} CPUs: other work shared the machine; the turns keep the comparison fair, but absolute figures are noisy.`);
  // Microseconds of CPU per request at saturation, both sidecars of the run together.
  const pairUs = (r: Run): number => (r.sidecars.reduce((sum, _, i) => sum + satCores(r, i), 0) * 1e6) / satOf(r).requestsPerSecond;
  if (tcp) {
    const tcpThroughput = ratio(satOf(tcp).requestsPerSecond, satOf(haproxy).requestsPerSecond);
    const tcpCpu = Math.max(...tcp.sidecars.map((_, i) => perKrps(tcp, i)));
    console.log(
      `  for comparison, tsmesh with the port as opaque TCP (no HTTP read or written): ${f(tcpThroughput)}x HAProxy's throughput, ${f(tcpCpu, 3)} cores per 1000 req/s;` +
        `\n    CPU per request at saturation, both sidecars together: tsmesh ${f(pairUs(tsmesh), 1)} us with HTTP and ${f(pairUs(tcp), 1)} us without; HAProxy ${f(pairUs(haproxy), 1)} us`,
    );
  }
  const haproxyCore = haproxy.sidecars.reduce((s, _, i) => s + satCores(haproxy, i), 0);
  if (PIN && haproxyCore < 0.9)
    console.log(`  note: at saturation the HAProxy pair used ${f(haproxyCore)} of its CPU: something else (the load side on CPU 0, or other work on the machine) held its throughput down.`);
  const yes = (ok: boolean): string => (ok ? 'yes' : 'no');
  for (const name of ['c64', 'body16k']) {
    if (!tsmesh.extra.has(name)) continue;
    const rps = (r: Run): number => mergeWrk(r.extra.get(name)!.wrkRuns).requestsPerSecond;
    const p99 = (r: Run): number => mergeWrk(r.extra.get(name)!.wrkRuns).p99;
    // Both sidecars' CPU per request, microseconds.
    const us = (r: Run): number => {
      const e = r.extra.get(name)!;
      return (e.cpuSeconds.reduce((a, b) => a + b, 0) * 1e6) / mergeWrk(e.wrkRuns).requests;
    };
    const connections = name === 'c64' ? WIDE_CONNECTIONS : CONNECTIONS;
    const body = name === 'c64' ? BODY_BYTES : LARGE_BODY_BYTES;
    console.log(
      `  saturation, ${connections} connections, POST ${body} B -> ${BODY_BYTES} B: tsmesh ${f(rps(tsmesh), 0)} req/s, HAProxy ${f(rps(haproxy), 0)} (${f(ratio(rps(tsmesh), rps(haproxy)))}x); p99 ${f(p99(tsmesh))} / ${f(p99(haproxy))} ms; ` +
        `CPU per request, both sidecars: ${f(us(tsmesh), 1)} / ${f(us(haproxy), 1)} us` +
        (tcp?.extra.has(name) ? `; opaque TCP ${f(rps(tcp), 0)} req/s, ${f(us(tcp), 1)} us` : ''),
    );
  }
  console.log(`bench:sidecar-aim name=throughput_vs_haproxy value=${f(throughput, 3)} aim=>=${AIM.throughputVsHaproxy} meets=${yes(throughput >= AIM.throughputVsHaproxy)}`);
  console.log(
    `bench:sidecar-aim name=cpu_per_krps_vs_haproxy value=${f(cpuRatio, 3)} tsmesh=${f(cpuPerKrps, 3)} haproxy=${f(haproxyCpu, 3)} aim=<=${AIM.cpuPerKrpsVsHaproxy} meets=${yes(cpuRatio <= AIM.cpuPerKrpsVsHaproxy)}`,
  );
  console.log(
    `bench:sidecar-aim name=added_p99_vs_haproxy value=${f(p99Median, 3)} min=${f(Math.min(...repeats), 3)} max=${f(Math.max(...repeats), 3)} repeats=${repeats.map((x) => f(x, 3)).join(',')} aim=<=${AIM.addedP99VsHaproxy} meets=${yes(p99Median <= AIM.addedP99VsHaproxy)}`,
  );
  console.log(`bench:sidecar-aim name=rss_mb value=${f(rss, 1)} node=${process.version} aim=<=${AIM.rssMb} meets=${yes(rss <= AIM.rssMb)}`);
  for (const name of ['c64', 'body16k']) {
    if (!tsmesh.extra.has(name)) continue;
    const w = (r: Run): WrkReport => mergeWrk(r.extra.get(name)!.wrkRuns);
    const us = (r: Run): number => (r.extra.get(name)!.cpuSeconds.reduce((a, b) => a + b, 0) * 1e6) / w(r).requests;
    console.log(
      `bench:sidecar-phase phase=${name} connections=${name === 'c64' ? WIDE_CONNECTIONS : CONNECTIONS} body_bytes=${name === 'c64' ? BODY_BYTES : LARGE_BODY_BYTES} ` +
        `throughput_vs_haproxy=${f(ratio(w(tsmesh).requestsPerSecond, w(haproxy).requestsPerSecond), 3)} tsmesh_rps=${f(w(tsmesh).requestsPerSecond, 0)} haproxy_rps=${f(w(haproxy).requestsPerSecond, 0)} ` +
        `tsmesh_p99_ms=${f(w(tsmesh).p99)} haproxy_p99_ms=${f(w(haproxy).p99)} tsmesh_us_per_request=${f(us(tsmesh), 1)} haproxy_us_per_request=${f(us(haproxy), 1)} ` +
        `tsmesh_errors=${w(tsmesh).errors} haproxy_errors=${w(haproxy).errors}`,
    );
  }
  console.log(`bench:sidecar throughput_vs_haproxy=${f(throughput, 3)} added_p99_vs_haproxy=${f(addedP99, 3)} rss_mb=${f(rss, 1)} cpu_per_krps=${f(cpuPerKrps, 3)}`);
  if (b)
    console.log(
      `bench:sidecar-ab a_cpu_per_krps=${tsmesh.sidecars.map((_, i) => f(perKrps(tsmesh, i), 3)).join('/')} b_cpu_per_krps=${b.sidecars.map((_, i) => f(perKrps(b, i), 3)).join('/')} ` +
        `a_rps=${f(satOf(tsmesh).requestsPerSecond, 0)} b_rps=${f(satOf(b).requestsPerSecond, 0)} a_added_p99_ms=${f(added(tsmesh, 'p99'))} b_added_p99_ms=${f(added(b, 'p99'))}`,
    );
}

/** --churn: connections per second of each run, the ratio to HAProxy's, and how many of tsmesh's handshakes were resumed. */
function reportChurn(runs: [Run, Run, Run], handshakes: { full: number; resumed: number }, load: [number, number]): void {
  const [, haproxy, tsmesh] = runs;
  const rate = (r: Run): number => sat(r).requestsPerSecond;
  // Both sidecars' CPU per connection at saturation, in microseconds.
  const cpuUs = (r: Run): number => (r.saturationCpuSeconds.reduce((a, b) => a + b, 0) * 1e6) / sat(r).requests;
  console.log(
    `\nPOST ${BODY_BYTES} B -> ${BODY_BYTES} B on a new connection each (Connection: close), to a Service port declared opaque TCP;` +
      `\nwrk, ${WRK_THREADS} thread(s), ${CONNECTIONS} connections at a time; the runs take turns in ${SLICE_MS / 1000} s slices, ${ROUNDS} rounds.` +
      `\nCPUs: ${PIN ? 'load, app, control planes on CPU 0; sidecars on CPU 1' : 'not pinned'}. tsmesh runs on Node.js ${process.version}.\n`,
  );
  for (const r of runs)
    console.log(
      `bench:sidecar-churn run=${r.name} connections_per_s=${f(rate(r), 0)} p50_ms=${f(sat(r).p50)} p99_ms=${f(sat(r).p99)} cpu_us_per_connection=${r.sidecars.length ? f(cpuUs(r), 1) : 'n/a'}`,
    );
  if (load[0] > 0.5) console.log(`note: load average ${f(load[0])} before the run and ${f(load[1])} after: other work shared the machine; the turns keep the comparison fair.`);
  const all = handshakes.full + handshakes.resumed;
  console.log(`bench:sidecar-churn throughput_vs_haproxy=${f(ratio(rate(tsmesh), rate(haproxy)), 3)} resumed_fraction=${f(all > 0 ? handshakes.resumed / all : Number.NaN, 3)} handshakes=${all}`);
}

/** Sums of a counter in the client sidecar's /metrics, by series: shows the policy in force. */
async function clientCounters(net: BenchNet, name: string, only = ''): Promise<number> {
  const r = await net.exec(net.client, ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:15020/metrics']);
  let sum = 0;
  for (const line of r.stdout.split('\n'))
    if ((line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && line.includes(only)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

const sat = (r: Run): WrkReport => mergeWrk(r.wrkRuns);
const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const perKrps = (r: Run, i: number): number => r.fixedCpuSeconds[i]! / (r.fixed!.requests / 1000);

/** The table of the tsmesh pairs that took turns (--policy, --telemetry, --routes). */
function reportPairs(runs: Run[]): void {
  const rows: [string, (r: Run) => string][] = [
    ['saturation throughput (req/s)', (r) => f(sat(r).requestsPerSecond, 0)],
    ['saturation p50 / p99 (ms)', (r) => `${f(sat(r).p50)} / ${f(sat(r).p99)}`],
    [`${RATE} req/s p50 / p90 / p99 (ms)`, (r) => `${f(r.fixed!.p50)} / ${f(r.fixed!.p90)} / ${f(r.fixed!.p99)}`],
    ['CPU per 1000 req/s, per sidecar (cores)', (r) => r.sidecars.map((_, i) => f(perKrps(r, i), 3)).join(' / ')],
    [`RSS per sidecar at ${RATE} req/s, peak (MB)`, (r) => r.memory.map((m) => f(m.rssMb, 1)).join(' / ')],
  ];
  const w0 = Math.max(...rows.map(([l]) => l.length)) + 2;
  const w = 26;
  console.log(
    `\nPOST ${BODY_BYTES} B -> ${BODY_BYTES} B. The ${runs.length} tsmesh pairs take turns in ${SLICE_MS / 1000} s slices, ${ROUNDS} measured rounds per phase;` +
      `\nsaturation: wrk, ${WRK_THREADS} thread(s), ${CONNECTIONS} connections; fixed rate: open loop, ${RATE} req/s. Sidecar figures are client / server.\n`,
  );
  console.log(''.padEnd(w0) + runs.map((r) => r.name.padStart(w)).join(''));
  for (const [label, cell] of rows) console.log(label.padEnd(w0) + runs.map((r) => cell(r).padStart(w)).join(''));
}

function reportPolicy(runs: [Run, Run, Run], inForce: { requests: number; delayed: number }, load: [number, number]): void {
  const [bare, authz, policy] = runs;
  reportPairs(runs);
  console.log(
    `\nthe policy in force: the delay fault (1% of requests) held ${inForce.delayed} of the client sidecar's ${inForce.requests} outbound requests (${f((100 * inForce.delayed) / inForce.requests)}%)`,
  );
  if (load[0] > 0.5) console.log(`note: load average ${f(load[0])} before the run and ${f(load[1])} after: other work shared the machine; the turns keep the comparison fair.`);
  console.log(
    `bench:sidecar-policy throughput_vs_bare=${f(ratio(sat(policy).requestsPerSecond, sat(bare).requestsPerSecond), 3)} authz_throughput_vs_bare=${f(ratio(sat(authz).requestsPerSecond, sat(bare).requestsPerSecond), 3)}`,
  );
}

/** What 50 Gateway API routes cost beside the bare pair, and that they were in force (the last route took the requests). */
function reportRoutes(runs: [Run, Run], taken: { requests: number; last: number }, load: [number, number]): void {
  const [bare, routes] = runs;
  reportPairs(runs);
  console.log(`\nthe routes in force: the last of the 50 routes took ${taken.last} of the client sidecar's ${taken.requests} outbound requests`);
  if (load[0] > 0.5) console.log(`note: load average ${f(load[0])} before the run and ${f(load[1])} after: other work shared the machine; the turns keep the comparison fair.`);
  console.log(`bench:sidecar-routes throughput_vs_bare=${f(ratio(sat(routes).requestsPerSecond, sat(bare).requestsPerSecond), 3)}`);
}

/** What span export and access logs cost beside the bare pair, and what they did (spans exported, lines written). */
function reportTelemetry(runs: [Run, Run, Run], did: { requests: number; exported: number; dropped: number; lines: number; logged: number }, load: [number, number]): void {
  const [bare, tracing, accessLog] = runs;
  reportPairs(runs);
  const cost = (r: Run): string =>
    `${f(ratio(sat(r).requestsPerSecond, sat(bare).requestsPerSecond), 3)}x the bare throughput, ` +
    `CPU per 1000 req/s ${r.sidecars.map((_, i) => `${perKrps(r, i) - perKrps(bare, i) >= 0 ? '+' : ''}${f(perKrps(r, i) - perKrps(bare, i), 3)}`).join(' / ')} cores (client / server)`;
  console.log(`\nspan export at 1%: ${cost(tracing)}; the client sidecar exported ${did.exported} spans for ${did.requests} requests (${f((100 * did.exported) / did.requests)}%), ${did.dropped} dropped`);
  console.log(`access log (all): ${cost(accessLog)}; ${did.lines} lines written for the client sidecar's ${did.logged} requests`);
  if (load[0] > 0.5) console.log(`note: load average ${f(load[0])} before the run and ${f(load[1])} after: other work shared the machine; the turns keep the comparison fair.`);
  console.log(
    `bench:sidecar-telemetry tracing_throughput_vs_bare=${f(ratio(sat(tracing).requestsPerSecond, sat(bare).requestsPerSecond), 3)} access_log_throughput_vs_bare=${f(ratio(sat(accessLog).requestsPerSecond, sat(bare).requestsPerSecond), 3)}`,
  );
}

async function profileRun(bench: Bench, tsmesh: Run, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  chownSync(dir, PROXY_UID, PROXY_UID);
  const before = new Set(readdirSync(dir));
  const straced = await straceAtFixedRate(tsmesh, dir);
  console.log(`\nprofiling the tsmesh pair at saturation, then at ${RATE} req/s (--cpu-prof into ${dir}) ...`);
  for (const p of tsmesh.sidecars) await tsmesh.net.stop(p, 5000);
  const pair = await bench.startTsmeshPair(tsmesh.net, ['--cpu-prof', '--cpu-prof-dir', dir], '-profiled');
  await bench.wrk(tsmesh.net, SERVICE_URL, WARM_UP);
  const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);
  type Cpu = { user: number; system: number; mainOnCpu: number; mainWaiting: number };
  const cpuOver = async (phase: () => Promise<void>): Promise<{ cpu: Cpu[]; window: readonly [number, number] }> => {
    const cpuBefore = pair.map((p) => cpuTimes(p.pid));
    const schedBefore = pair.map((p) => mainThreadSched(p.pid));
    const from = monotonicUs();
    await phase();
    const window = [from, monotonicUs()] as const;
    const cpu = pair.map((p, i) => {
      const after = cpuTimes(p.pid);
      const sched = mainThreadSched(p.pid);
      return {
        user: after.user - cpuBefore[i]!.user,
        system: after.system - cpuBefore[i]!.system,
        mainOnCpu: sched.onCpu - schedBefore[i]!.onCpu,
        mainWaiting: sched.waiting - schedBefore[i]!.waiting,
      };
    });
    return { cpu, window };
  };
  let saturated = 0;
  const script = process.env['BENCH_PROFILE_LARGE'] === '1' ? 'post-large.lua' : 'post.lua';
  const saturation = await cpuOver(async () => {
    const wrk = await bench.wrk(tsmesh.net, SERVICE_URL, ROUNDS, script);
    saturated = wrk.requests / (wrk.durationUs / 1e6);
  });
  console.log(`  ${saturated.toFixed(0)} req/s for ${ROUNDS} s under the profiler; the figures below cover that phase only (no start-up, no warm-up)`);
  // The same pair at the fixed rate, one slice after another with no other run between them.
  const client = new OpenLoopClient({ ...tsmesh, sidecars: pair });
  let requests = 0;
  await client.line('ready');
  for (let i = 0; i < WARM_UP; i++) await client.slice(false);
  const fixed = await cpuOver(async () => {
    try {
      for (let i = 0; i < ROUNDS; i++) await client.slice(true);
      requests = (await client.end()).requests;
    } finally {
      client.kill();
    }
  });
  console.log(`  then ${RATE} req/s for ${ROUNDS} s (${requests} requests) under the profiler`);
  // SIGTERM: the proxy drains and exits, and V8 writes the profile on exit.
  for (const p of pair) await tsmesh.net.stop(p, 10_000);
  const written = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && !before.has(f));
  const ms = (sec: number): string => `${(sec * 1000).toFixed(0)} ms`;
  for (const file of written) {
    // CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile
    const pid = /^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1] ?? '';
    const i = pair.findIndex((p) => String(p.pid) === pid);
    console.log(`\n${pair[i]?.name ?? 'tsmesh proxy'}: ${join(dir, file)}`);
    for (const [what, phase] of [['saturation', saturation], [`${RATE} req/s`, fixed]] as const) {
      const c = phase.cpu[i];
      console.log(`\n  ${what}:`);
      if (c)
        console.log(
          `  over the phase: CPU ${ms(c.user)} user + ${ms(c.system)} system (all threads); main thread ${ms(c.mainOnCpu)} on a CPU, ${ms(c.mainWaiting)} ready but waiting for one`,
        );
      console.log(formatTop(topSelfTime(join(dir, file), 20, REPO, phase.window)));
    }
  }
  console.log(straced);
  if (written.length === 0) console.log(`  no profile was written; see the proxy logs in ${bench.work}`);
  else
    console.log(
      '\nV8 samples wall-clock time, so "busy" also holds moments the main thread was ready but waiting for a CPU (the total' +
        '\nwait is printed above), charged to the frame it was in: most often writev, where a write wakes the peer sidecar,' +
        '\nwhich shares its CPU and may take it. Read writev\'s share against the CPU times, the other entries as they are.',
    );
}

/**
 * The measured pair's system calls at the fixed rate (strace -c -f on each
 * sidecar, not under the profiler, whose signals would be counted), per
 * request: ROUNDS one-second slices in a row after WARM_UP ones.
 */
async function straceAtFixedRate(tsmesh: Run, dir: string): Promise<string> {
  const client = new OpenLoopClient(tsmesh);
  const outs = tsmesh.sidecars.map((p) => join(dir, `strace-${p.name}-${p.pid}.txt`));
  let requests = 0;
  try {
    await client.line('ready');
    for (let i = 0; i < WARM_UP; i++) await client.slice(false);
    const straces = tsmesh.sidecars.map((p, i) => spawn('strace', ['-c', '-f', '-o', outs[i]!, '-p', String(p.pid)], { stdio: 'ignore' }));
    const exited = straces.map((t) => new Promise<void>((resolve) => t.on('exit', () => resolve()).on('error', () => resolve())));
    try {
      for (let i = 0; i < ROUNDS; i++) await client.slice(true);
      requests = (await client.end()).requests;
    } finally {
      for (const t of straces) t.kill('SIGINT');
      await Promise.all(exited);
    }
  } finally {
    client.kill();
  }
  const lines = [`\nsystem calls per request at ${RATE} req/s over ${requests} requests (strace -c -f; ${tsmesh.sidecars.map((p) => p.name).join(' / ')}):`];
  const counts = outs.map((out) => {
    const byCall = new Map<string, number>();
    if (!existsSync(out)) return byCall;
    for (const row of readFileSync(out, 'utf8').split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(row);
      if (m && requests > 0) byCall.set(m[2]!, Number(m[1]) / requests);
    }
    return byCall;
  });
  const names = [...new Set(counts.flatMap((c) => [...c.keys()]))].sort((a, b) => (counts[0]!.get(b) ?? 0) - (counts[0]!.get(a) ?? 0));
  for (const name of names) lines.push(`  ${name.padEnd(20)} ${counts.map((c) => (c.get(name) ?? 0).toFixed(2)).join(' / ')}`);
  return lines.join('\n');
}

/**
 * Both phases over `runs`, after a warm-up; every request must have
 * succeeded. `repeats`: times the fixed-rate phase runs; `extra`: the
 * 64-connection and large-body saturation phases after the others.
 */
async function measure(bench: Bench, runs: Run[], repeats = 1, extra = false): Promise<void> {
  for (const r of runs) console.log(`${r.name.padEnd(14)} ${r.net.client} -> ${r.net.server}: ${r.url}`);
  console.log(`warming up (${WARM_UP} s of wrk per run) ...`);
  for (const r of runs) await bench.wrk(r.net, r.url, WARM_UP);
  for (let i = 0; i < repeats; i++) {
    console.log(`fixed rate: ${RATE} req/s, ${WARM_UP} + ${ROUNDS} rounds${repeats > 1 ? ` (repeat ${i + 1} of ${repeats})` : ''} ...`);
    await bench.fixedRatePhase(runs);
  }
  console.log(`saturation: ${ROUNDS} rounds ...`);
  await bench.saturationPhase(runs);
  if (extra) {
    console.log(`saturation with ${WIDE_CONNECTIONS} connections: ${ROUNDS} rounds ...`);
    await bench.extraPhase(runs, 'c64', 'post.lua', WIDE_CONNECTIONS);
    console.log(`saturation with ${LARGE_BODY_BYTES} B POSTs: ${ROUNDS} rounds ...`);
    await bench.extraPhase(runs, 'body16k', 'post-large.lua', CONNECTIONS);
  }
  failIfErrors(runs);
}

/** The measured phases must have no failed request; the extra phases print theirs (errors=) instead. */
function failIfErrors(runs: Run[]): void {
  const failed = runs.filter((r) => r.fixed!.errors > 0 || mergeWrk(r.wrkRuns).errors > 0);
  if (failed.length > 0)
    throw new Error(failed.map((r) => `${r.name}: requests failed (fixed rate ${r.fixed!.errors}, first: ${r.fixed!.firstError}; wrk ${mergeWrk(r.wrkRuns).errors})`).join('\n'));
}

/** The repeats of the fixed-rate phase as one: requests and errors summed, each percentile the median of the repeats'. */
function pooledFixed(repeats: FixedRate[]): FixedRate {
  const of = (p: 'p50' | 'p90' | 'p99' | 'p999'): number => median(repeats.map((f) => f[p]));
  const firstError = repeats.find((f) => f.firstError !== undefined)?.firstError;
  return {
    requests: repeats.reduce((n, f) => n + f.requests, 0),
    errors: repeats.reduce((n, f) => n + f.errors, 0),
    ...(firstError !== undefined ? { firstError } : {}),
    p50: of('p50'),
    p90: of('p90'),
    p99: of('p99'),
    p999: of('p999'),
    max: Math.max(...repeats.map((f) => f.max)),
  };
}

async function main(): Promise<number> {
  const why = await unavailable();
  if (why) {
    console.error(`bench:sidecar: ${why}`);
    return 1;
  }
  const loadBefore = loadAverage();
  const bench = new Bench();
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await bench.destroy();
      if (process.env['BENCH_KEEP'] === '1') console.log(`kept ${bench.work}`);
      else rmSync(bench.work, { recursive: true, force: true });
    })());
  // Ctrl-C reaches this process twice (from the terminal and relayed by tsx): every signal
  // after the first waits for the same cleanup instead of ending the process half-way.
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      if (cleaning === undefined) console.error(`\nbench:sidecar: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });

  try {
    const haproxyTls = await bench.prepare();
    const fresh = (name: Run['name'], net: BenchNet, url: string, sidecars: Started[]): Run => ({
      name,
      net,
      url,
      sidecars,
      fixedCpuSeconds: sidecars.map(() => 0),
      fixedRounds: [],
      fixedRepeats: [],
      memory: [],
      wrkRuns: [],
      saturationCpuSeconds: [],
      memoryAfterSaturation: [],
      extra: new Map(),
    });

    /** A tsmesh pair in namespaces of its own, running the proxy configs named by `config` ('' for the bare ones, '-policy', '-routes', ...). */
    const pair = async (name: Run['name'], config: string): Promise<Run> => {
      const net = await bench.newNet();
      await bench.startApp(net, name);
      await bench.meshPods(net);
      await bench.startControlPlanes(net);
      return fresh(name, net, SERVICE_URL, await bench.startTsmeshPair(net, NODE_FLAGS, config, config));
    };

    if (POLICY) {
      const runs: [Run, Run, Run] = [await pair('tsmesh', ''), await pair('tsmesh+authz', '-authz'), await pair('tsmesh+policy', '-policy')];
      await measure(bench, runs);
      const inForce = {
        requests: await clientCounters(runs[2].net, 'tsmesh_requests_total', 'direction="outbound"'),
        delayed: await clientCounters(runs[2].net, 'tsmesh_faults_injected_total', 'kind="delay"'),
      };
      if (inForce.delayed === 0) throw new Error('the policy was not in force: the client sidecar injected no delay fault');
      for (const r of runs.slice(1)) {
        const config = JSON.parse((await r.net.exec(r.net.server, ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:15020/config'])).stdout) as { inbound: { authorization?: { rules: unknown[] }[] } };
        const rules = (config.inbound.authorization ?? []).reduce((n, p) => n + p.rules.length, 0);
        if (rules !== 50) throw new Error(`${r.name}: the server sidecar runs ${rules} authorization rules, not the 50 of benchPolicies()`);
      }
      reportPolicy(runs, inForce, [loadBefore, loadAverage()]);
      return 0;
    }

    if (ROUTES) {
      const runs: [Run, Run] = [await pair('tsmesh', ''), await pair('tsmesh+routes', '-routes')];
      await measure(bench, runs);
      const taken = {
        requests: await clientCounters(runs[1].net, 'tsmesh_requests_total', 'direction="outbound"'),
        last: await clientCounters(runs[1].net, 'tsmesh_requests_total', `route="httproute/${NAMESPACE}/bench-last/rule-0"`),
      };
      if (taken.last === 0 || taken.last !== taken.requests) throw new Error(`the routes were not in force: the last route took ${taken.last} of ${taken.requests} requests`);
      reportRoutes(runs, taken, [loadBefore, loadAverage()]);
      return 0;
    }

    if (TELEMETRY) {
      if (!existsSync(OTELCOL)) throw new Error(`--telemetry needs the OpenTelemetry Collector at ${OTELCOL}: run bash test/otelcol/build.sh`);
      const pair = async (name: Run['name'], config: string): Promise<Run> => {
        const net = await bench.newNet();
        await bench.startApp(net, name);
        await bench.meshPods(net);
        await bench.startControlPlanes(net);
        if (config === '-tracing') await bench.startCollectors(net);
        return fresh(name, net, SERVICE_URL, await bench.startTsmeshPair(net, NODE_FLAGS, config, config));
      };
      const runs: [Run, Run, Run] = [await pair('tsmesh', ''), await pair('tsmesh+tracing', '-tracing'), await pair('tsmesh+access-log', '-accesslog')];
      await measure(bench, runs);
      const client = (r: Run): Started => r.sidecars[0]!;
      const did = {
        requests: await clientCounters(runs[1].net, 'tsmesh_requests_total', 'direction="outbound"'),
        exported: await clientCounters(runs[1].net, 'tsmesh_trace_spans_exported_total'),
        dropped: await clientCounters(runs[1].net, 'tsmesh_trace_spans_dropped_total'),
        logged: await clientCounters(runs[2].net, 'tsmesh_requests_total', 'direction="outbound"'),
        lines: readFileSync(client(runs[2]).log, 'utf8').split('\n').filter((l) => l.startsWith('{"time":') && l.includes('"direction":"outbound"')).length,
      };
      if (did.exported === 0) throw new Error('span export was not in force: the client sidecar exported no span');
      if (did.lines === 0) throw new Error('the access log was not in force: the client sidecar wrote no line');
      reportTelemetry(runs, did, [loadBefore, loadAverage()]);
      return 0;
    }

    if (CHURN) {
      // Each run opens tens of thousands of connections: TIME_WAIT sockets must not run out the ports.
      const churnNet = async (): Promise<BenchNet> => {
        const net = await bench.newNet();
        for (const ns of [net.client, net.server]) await net.exec(ns, ['sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']);
        return net;
      };
      const directNet = await churnNet();
      await bench.startApp(directNet, 'direct');
      const hNet = await churnNet();
      const hApp = await bench.startApp(hNet, 'haproxy-tcp');
      await bench.meshPods(hNet);
      const hServer = bench.startHaproxy(hNet, 'haproxy-tcp-server', hNet.server, serverTcpSidecarConfig(INBOUND_PORT, APP_PORT, haproxyTls.server), SIDECAR);
      const hClient = bench.startHaproxy(hNet, 'haproxy-tcp-client', hNet.client, clientTcpSidecarConfig(OUTBOUND_PORT, ADDRESSES.server, APP_PORT, haproxyTls.client), SIDECAR);
      await bench.waitThrough('a request through the HAProxy TCP pair', hNet, SERVICE_URL, [hClient, hServer, hApp]);
      const tNet = await churnNet();
      await bench.startApp(tNet, 'tsmesh-tcp');
      await bench.meshPods(tNet);
      await bench.startControlPlanes(tNet);
      const runs: [Run, Run, Run] = [
        fresh('direct', directNet, DIRECT_URL, []),
        fresh('haproxy-tcp', hNet, SERVICE_URL, [hClient, hServer]),
        fresh('tsmesh-tcp', tNet, SERVICE_URL, await bench.startTsmeshPair(tNet, NODE_FLAGS, '-tcp', '-tcp')),
      ];
      for (const r of runs) console.log(`${r.name.padEnd(14)} ${r.net.client} -> ${r.net.server}: ${r.url}`);
      console.log(`warming up (${WARM_UP} s of wrk per run, a connection per request) ...`);
      for (const r of runs) await bench.wrk(r.net, r.url, WARM_UP, 'churn.lua');
      console.log(`connection churn: ${ROUNDS} rounds ...`);
      await bench.saturationPhase(runs, 'churn.lua');
      const failed = runs.filter((r) => mergeWrk(r.wrkRuns).errors > 0);
      if (failed.length > 0) throw new Error(failed.map((r) => `${r.name}: ${mergeWrk(r.wrkRuns).errors} requests failed`).join('\n'));
      const handshakes = {
        full: await clientCounters(tNet, 'tsmesh_tls_handshakes_total', 'resumed="false"'),
        resumed: await clientCounters(tNet, 'tsmesh_tls_handshakes_total', 'resumed="true"'),
      };
      reportChurn(runs, handshakes, [loadBefore, loadAverage()]);
      return 0;
    }

    // direct: no redirects, no sidecars.
    const directNet = await bench.newNet();
    await bench.startApp(directNet, 'direct');
    const direct = fresh('direct', directNet, DIRECT_URL, []);

    // haproxy: meshed pods, HAProxy on the capture ports.
    const haproxyNet = await bench.newNet();
    const haproxyApp = await bench.startApp(haproxyNet, 'haproxy');
    await bench.meshPods(haproxyNet);
    const hServer = bench.startHaproxy(haproxyNet, 'haproxy-server', haproxyNet.server, serverSidecarConfig(INBOUND_PORT, APP_PORT, haproxyTls.server), SIDECAR);
    const hClient = bench.startHaproxy(
      haproxyNet,
      'haproxy-client',
      haproxyNet.client,
      clientSidecarConfig(OUTBOUND_PORT, ADDRESSES.server, APP_PORT, haproxyTls.client),
      SIDECAR,
    );
    await bench.waitThrough('a request through the HAProxy pair', haproxyNet, SERVICE_URL, [hClient, hServer, haproxyApp]);
    const haproxy = fresh('haproxy', haproxyNet, SERVICE_URL, [hClient, hServer]);

    // tsmesh: meshed pods, a control plane per pod on loopback, `tsmesh proxy` on the capture ports.
    const tsmeshNet = await bench.newNet();
    await bench.startApp(tsmeshNet, 'tsmesh');
    await bench.meshPods(tsmeshNet);
    await bench.startControlPlanes(tsmeshNet);
    const tsmesh = fresh('tsmesh', tsmeshNet, SERVICE_URL, await bench.startTsmeshPair(tsmeshNet, NODE_FLAGS, '', '', TSMESH_DIST));

    // tsmesh-tcp: the same, with the Service port as opaque TCP.
    const runs = [direct, haproxy, tsmesh];
    if (TCP_RUN) {
      const tcpNet = await bench.newNet();
      await bench.startApp(tcpNet, 'tsmesh-tcp');
      await bench.meshPods(tcpNet);
      await bench.startControlPlanes(tcpNet);
      runs.push(fresh('tsmesh-tcp', tcpNet, SERVICE_URL, await bench.startTsmeshPair(tcpNet, NODE_FLAGS, '-tcp', '-tcp', TSMESH_DIST)));
    }
    // tsmesh-b: the tsmesh run's configuration on another build.
    if (COMPARE_DIST !== '' || COMPARE_FLAGS.length > 0) {
      const bNet = await bench.newNet();
      await bench.startApp(bNet, 'tsmesh-b');
      await bench.meshPods(bNet);
      await bench.startControlPlanes(bNet);
      runs.push(fresh('tsmesh-b', bNet, SERVICE_URL, await bench.startTsmeshPair(bNet, [...NODE_FLAGS, ...COMPARE_FLAGS], '-b', '', COMPARE_DIST)));
    }
    await measure(bench, runs, P99_REPEATS, EXTRA);

    report(runs, [loadBefore, loadAverage()]);

    if (PROFILE !== '' && PROFILE !== '0') await profileRun(bench, tsmesh, PROFILE === '1' ? join(tmpdir(), `tsmesh-bench-sidecar-profile-${Date.now()}`) : PROFILE);
    return 0;
  } catch (e) {
    console.error(`bench:sidecar: ${(e as Error).message}`);
    if (process.env['BENCH_KEEP'] !== '1') console.error('(BENCH_KEEP=1 keeps the configuration, certificates and logs of a run)');
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
