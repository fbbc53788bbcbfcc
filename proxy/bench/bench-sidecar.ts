// npm run bench:sidecar: what a pair of tsmesh sidecars costs, beside a direct
// connection and beside a pair of HAProxy sidecars doing the same mTLS with
// the same CA, in network namespaces this script creates (topology.ts).
//
//   client pod ns (10.244.200.2)                 server pod ns (10.244.200.3)
//   load -> [sidecar :15001] ==== mTLS ====> [sidecar :15006] -> app 127.0.0.1:8080
//
// Three runs, the same load each time:
//   direct   the load dials the app at 10.244.200.3:8080; no redirects, no sidecars.
//   haproxy  `tsmesh init` redirects in both namespaces; HAProxy as uid 1337 on
//            15001 (client) and 15006 (server); the load dials the Service's
//            ClusterIP 10.96.200.10:80, as an app in a meshed pod does.
//   tsmesh   the same redirects and target; `tsmesh proxy` as uid 1337 in each
//            namespace, its certificate from `tsmesh control-plane` (token file).
// The app is HAProxy answering a fixed body from memory (haproxy.ts): lighter
// than a Node server, so the load side leaves more of the machine to the
// sidecars, and identical in all three runs.
//
// Load: wrk at saturation (BENCH_CONNECTIONS=16 connections), then an open-loop
// client (open-loop.ts) at BENCH_RATE=1000 requests/s; every request is a POST
// of a 1 kB body answered with a 1 kB body. Each phase has a warm-up that is
// not measured. Per sidecar: CPU (utime+stime over the phase), RSS and USS at
// the end of the fixed-rate phase.
//
// CPUs: with two or more, the load, the app and the control planes are pinned
// to CPU 0 and both sidecars to CPU 1, the same for HAProxy and tsmesh; so the
// two sidecars of a run share one core, and wrk runs one thread. BENCH_PIN=0
// turns pinning off.
//
// BENCH_PROFILE=1 (or a folder) runs the tsmesh pair once more after the
// measured runs, under --cpu-prof, for the saturation phase only, and prints
// each proxy's top self-time functions; the measured figures are not profiled.
//
// Ends with one machine-readable line:
//   bench:sidecar throughput_vs_haproxy=<r> added_p99_vs_haproxy=<r> rss_mb=<n> cpu_per_krps=<n>
// Needs root, iproute2, iptables, util-linux, curl, wrk and haproxy.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientSidecarConfig, serverSidecarConfig, upstreamConfig, type SidecarTls } from './haproxy.js';
import { CpuMeter, memory, parseWrk, type Memory, type WrkReport } from './measure.js';
import { formatTop, topSelfTime } from './profile-top.js';
import { ADDRESSES, BenchNet, must, REPO, run, tail, unavailable, type Placement, type Started } from './topology.js';

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${JSON.stringify(raw)} is not a positive number`);
  return n;
};
const SECONDS = num('BENCH_SECONDS', 10);
const WARM_UP = num('BENCH_WARMUP_SECONDS', 2);
const RATE = num('BENCH_RATE', 1000);
const CONNECTIONS = num('BENCH_CONNECTIONS', 16);
const BODY_BYTES = num('BENCH_BODY_BYTES', 1024);
const PROFILE = process.env['BENCH_PROFILE'] ?? '';

const APP_PORT = 8080;
const SERVICE_PORT = 80;
const PROXY_UID = 1337;
const OUTBOUND_PORT = 15001;
const INBOUND_PORT = 15006;
const TRUST_DOMAIN = 'cluster.local';
const NAMESPACE = 'bench';
const idOf = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/${NAMESPACE}/sa/${sa}`;

const AIM = { throughputVsHaproxy: 0.6, addedP99VsHaproxy: 1.5, rssMb: 60, cpuPerKrps: 0.1 };

const PIN = availableParallelism() >= 2 && process.env['BENCH_PIN'] !== '0';
const LOAD: Placement = { cpu: PIN ? 0 : undefined };
const SIDECAR: Placement = { cpu: PIN ? 1 : undefined, uid: PROXY_UID };
const WRK_THREADS = PIN ? 1 : 2;

/** The project compiled as a container runs it (node dist/cli/main.js), outside the shared dist/. */
const BUILD = join(REPO, 'node_modules', '.cache', 'tsmesh-bench-sidecar', 'dist');
const TSMESH = [process.execPath, join(BUILD, 'cli', 'main.js')];

interface ScenarioResult {
  name: string;
  wrk: WrkReport;
  saturationCpu: number[];
  fixed: FixedRate;
  fixedCpu: number[];
  /** At the end of the fixed-rate phase. */
  memory: Memory[];
  memoryAfterSaturation: Memory[];
  sidecars: string[];
}

interface FixedRate {
  requests: number;
  ok: number;
  errors: number;
  firstError?: string;
  achievedRate: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** The 1-minute load average: other work on the machine skews latencies and shares the sidecars' CPU. */
const loadAverage = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logs: Started[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const p of logs)
      if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`${p.name} exited while waiting for ${what}:\n${tail(p.log)}`);
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${logs.map((p) => `\n--- ${p.name} (${p.log}):\n${tail(p.log)}`).join('')}`);
}

class Bench {
  readonly work = mkdtempSync(join(tmpdir(), 'tsmesh-bench-sidecar-'));
  net!: BenchNet;

  constructor() {
    chmodSync(this.work, 0o755);
  }

  path(...parts: string[]): string {
    return join(this.work, ...parts);
  }

  /** A file the sidecars (uid 1337) can read. */
  sidecarFile(name: string, content: string | Buffer, mode = 0o600): string {
    const p = this.path(name);
    writeFileSync(p, content, { mode });
    chownSync(p, PROXY_UID, PROXY_UID);
    return p;
  }

  async httpCode(ns: string, url: string): Promise<string> {
    const r = await this.net.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', '-X', 'POST', '--data-binary', `@${this.path('body.bin')}`, '-H', 'content-type: application/octet-stream', url], LOAD, 5000);
    return r.stdout.trim();
  }

  async wrk(url: string, seconds: number): Promise<WrkReport> {
    const r = await this.net.exec(
      this.net.client,
      ['wrk', `-t${WRK_THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', this.path('post.lua'), url],
      LOAD,
      (seconds + 30) * 1000,
    );
    if (r.code !== 0) throw new Error(`wrk exited ${r.code}: ${r.stderr.trim()}`);
    return parseWrk(r.stdout);
  }

  /** The fixed-rate phase: CPU of the sidecars between measure-start and measure-end, memory at the end. */
  fixedRate(url: string, sidecars: readonly Started[]): Promise<{ fixed: FixedRate; cpu: number[]; memory: Memory[] }> {
    const command = [process.execPath, '--import', 'tsx', join(REPO, 'proxy', 'bench', 'open-loop.ts'), url, String(RATE), String(WARM_UP), String(SECONDS), String(BODY_BYTES)];
    const args = ['netns', 'exec', this.net.client, ...(LOAD.cpu === undefined ? [] : ['taskset', '-c', String(LOAD.cpu)]), ...command];
    return new Promise((resolve, reject) => {
      const child = spawn('ip', args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let meter: CpuMeter | undefined;
      let cpu: number[] = [];
      let mem: Memory[] = [];
      const pids = sidecars.map((s) => s.pid);
      const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), (WARM_UP + SECONDS + 60) * 1000);
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (!meter && out.includes('measure-start\n')) meter = new CpuMeter(pids);
        if (meter && cpu.length === 0 && pids.length > 0 && out.includes('measure-end\n')) {
          cpu = meter.stop().cores;
          mem = pids.map(memory);
        }
      });
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      child.on('close', (code) => {
        clearTimeout(timer);
        const last = out.trim().split('\n').pop() ?? '';
        if (code !== 0 || !last.startsWith('{')) {
          reject(new Error(`the open-loop client exited ${code}: ${err.trim() || out.trim()}`));
          return;
        }
        resolve({ fixed: JSON.parse(last) as FixedRate, cpu, memory: mem });
      });
    });
  }

  /**
   * The fixed rate first, so the memory figures are those of a proxy that has
   * only seen that load; then saturation, after which memory is read again.
   */
  async scenario(name: string, url: string, sidecars: Started[]): Promise<ScenarioResult> {
    console.log(`\n${name}: ${url}`);
    const { fixed, cpu, memory: mem } = await this.fixedRate(url, sidecars);
    console.log(
      `  ${RATE} req/s: ${fixed.ok}/${fixed.requests} ok, p50 ${fixed.p50.toFixed(2)} ms, p90 ${fixed.p90.toFixed(2)} ms, p99 ${fixed.p99.toFixed(2)} ms, max ${fixed.max.toFixed(2)} ms` +
        (fixed.errors ? `, ${fixed.errors} errors (first: ${fixed.firstError})` : ''),
    );
    for (const [i, s] of sidecars.entries())
      console.log(`    ${s.name}: CPU ${cpu[i]!.toFixed(3)} cores, RSS ${mem[i]!.rssMb.toFixed(1)} MB, USS ${mem[i]!.ussMb.toFixed(1)} MB`);
    await this.wrk(url, WARM_UP);
    const meter = new CpuMeter(sidecars.map((s) => s.pid));
    const wrk = await this.wrk(url, SECONDS);
    const saturationCpu = meter.stop().cores;
    const memoryAfter = sidecars.map((s) => memory(s.pid));
    console.log(`  saturation: ${wrk.requestsPerSecond.toFixed(0)} req/s, p50 ${wrk.p50.toFixed(2)} ms, p99 ${wrk.p99.toFixed(2)} ms, errors ${wrk.errors}`);
    for (const [i, s] of sidecars.entries())
      console.log(`    ${s.name}: CPU ${saturationCpu[i]!.toFixed(3)} cores, RSS ${memoryAfter[i]!.rssMb.toFixed(1)} MB, USS ${memoryAfter[i]!.ussMb.toFixed(1)} MB`);
    if (wrk.errors > 0 || fixed.errors > 0) throw new Error(`${name}: requests failed (wrk ${wrk.errors}, fixed rate ${fixed.errors})`);
    return { name, wrk, saturationCpu, fixed, fixedCpu: cpu, memory: mem, memoryAfterSaturation: memoryAfter, sidecars: sidecars.map((s) => s.name) };
  }

  async prepare(): Promise<{ haproxyTls: { client: SidecarTls; server: SidecarTls } }> {
    console.log('building the project (tsc) into node_modules/.cache/tsmesh-bench-sidecar ...');
    const build = await run(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', BUILD], 120_000);
    if (build.code !== 0) {
      // tsc emits despite type errors; a missing entry point is what stops the benchmark.
      console.log(`  tsc reported errors (exit ${build.code}); running what it emitted:\n${build.stdout.split('\n').slice(0, 5).join('\n')}`);
    }
    await must(TSMESH[0]!, [...TSMESH.slice(1), '--help']);

    writeFileSync(this.path('body.bin'), Buffer.alloc(BODY_BYTES, 'b'));
    writeFileSync(
      this.path('post.lua'),
      `wrk.method = "POST"\nwrk.body = string.rep("x", ${BODY_BYTES})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`,
    );

    // One CA for everything: the control planes sign the tsmesh proxies' CSRs with it,
    // and `tsmesh ca issue` signs HAProxy's certificates with it.
    await must(TSMESH[0]!, [...TSMESH.slice(1), 'ca', 'init', '--out', this.path('ca'), '--trust-domain', TRUST_DOMAIN]);
    const haproxyTls = { client: await this.issue('client'), server: await this.issue('server') };

    const tokens = { client: `bench-client-${'0'.repeat(24)}`, server: `bench-server-${'0'.repeat(24)}` };
    writeFileSync(
      this.path('tokens.yaml'),
      `tokens:\n${Object.entries(tokens)
        .map(([sa, token]) => `  - token: ${token}\n    spiffeId: ${idOf(sa)}\n`)
        .join('')}`,
      { mode: 0o600 },
    );
    for (const [sa, token] of Object.entries(tokens)) this.sidecarFile(`${sa}.token`, token);
    this.sidecarFile('root-cert.pem', readFileSync(this.path('ca', 'root-cert.pem')), 0o644);

    const base = { apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', version: 'bench-1', mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT' } };
    this.sidecarFile(
      'client-proxy.json',
      JSON.stringify({
        ...base,
        services: [
          {
            name: 'upstream',
            namespace: NAMESPACE,
            clusterIPs: [ADDRESSES.clusterIp],
            ports: [{ port: SERVICE_PORT, name: 'http', protocol: 'http', targetPort: APP_PORT }],
            endpoints: [{ address: ADDRESSES.server, identity: idOf('server') }],
          },
        ],
        inbound: {},
      }),
      0o644,
    );
    this.sidecarFile('server-proxy.json', JSON.stringify({ ...base, services: [], inbound: { mtlsMode: 'STRICT' } }), 0o644);
    return { haproxyTls };
  }

  private async issue(sa: string): Promise<SidecarTls> {
    const dir = this.path(`haproxy-${sa}`);
    await must(TSMESH[0]!, [...TSMESH.slice(1), 'ca', 'issue', '--ca', this.path('ca'), '--spiffe-id', idOf(sa), '--out', dir]);
    const pem = readFileSync(join(dir, 'cert.pem'), 'utf8') + readFileSync(join(dir, 'key.pem'), 'utf8');
    return {
      certAndKey: this.sidecarFile(`haproxy-${sa}.pem`, pem),
      bundle: this.sidecarFile(`haproxy-${sa}-bundle.pem`, readFileSync(join(dir, 'bundle.pem')), 0o644),
    };
  }

  startHaproxy(name: string, ns: string, config: string, placement: Placement): Started {
    const file = this.sidecarFile(`${name}.cfg`, config, 0o644);
    // -db: foreground, no master process: the PID measured is the one doing the work.
    return this.net.start(name, ns, ['haproxy', '-db', '-f', file], this.path(`${name}.log`), placement);
  }

  startTsmeshProxy(name: string, ns: string, sa: 'client' | 'server', podIp: string, extraNodeFlags: string[] = []): Started {
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      TSMESH_POD_NAME: `${sa}-0`,
      TSMESH_POD_NAMESPACE: NAMESPACE,
      TSMESH_POD_IP: podIp,
      TSMESH_SERVICE_ACCOUNT: sa,
      TSMESH_TRUST_DOMAIN: TRUST_DOMAIN,
      // One control plane per namespace, on loopback: its serving certificate names 127.0.0.1 and
      // the Service's DNS names, but no pod or node IP (control/plane.ts has no option for IP SANs).
      TSMESH_CONTROL_PLANE_ADDRESS: '127.0.0.1:15012',
      TSMESH_TOKEN_PATH: this.path(`${sa}.token`),
      TSMESH_TRUST_BUNDLE_PATH: this.path('root-cert.pem'),
      TSMESH_CONFIG_FILE: this.path(`${sa}-proxy.json`),
      TSMESH_DRAIN_DURATION: '1s',
    };
    return this.net.start(name, ns, [TSMESH[0]!, ...extraNodeFlags, ...TSMESH.slice(1), 'proxy'], this.path(`${name}.log`), SIDECAR, env);
  }

  async waitThrough(what: string, url: string, logs: Started[]): Promise<void> {
    await waitFor(what, async () => (await this.httpCode(this.net.client, url)) === '200', 20_000, logs);
  }

  async startTsmeshPair(extraNodeFlags: string[] = [], suffix = ''): Promise<Started[]> {
    const server = this.startTsmeshProxy(`tsmesh-server${suffix}`, this.net.server, 'server', ADDRESSES.server, extraNodeFlags);
    const client = this.startTsmeshProxy(`tsmesh-client${suffix}`, this.net.client, 'client', ADDRESSES.client, extraNodeFlags);
    for (const [p, ns] of [[server, this.net.server], [client, this.net.client]] as const) {
      await waitFor(
        `${p.name} /ready`,
        async () => (await this.net.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', 'http://127.0.0.1:15020/ready'])).stdout === '200',
        20_000,
        [p],
      );
    }
    await this.waitThrough('a request through the tsmesh pair', serviceUrl(), [client, server]);
    return [client, server];
  }
}

const serviceUrl = (): string => `http://${ADDRESSES.clusterIp}:${SERVICE_PORT}/`;

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : Number.NaN;
}

function report(direct: ScenarioResult, haproxy: ScenarioResult, tsmesh: ScenarioResult, load: [number, number]): void {
  const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const added = (r: ScenarioResult, p: 'p50' | 'p90' | 'p99'): number => r.fixed[p] - direct.fixed[p];
  const rows: [string, (r: ScenarioResult) => string][] = [
    ['saturation throughput (req/s)', (r) => f(r.wrk.requestsPerSecond, 0)],
    ['saturation p50 / p99 (ms)', (r) => `${f(r.wrk.p50)} / ${f(r.wrk.p99)}`],
    ['saturation CPU per sidecar (cores)', (r) => (r.sidecars.length ? r.saturationCpu.map((c) => f(c)).join(' / ') : '-')],
    [`${RATE} req/s achieved`, (r) => f(r.fixed.achievedRate, 0)],
    [`${RATE} req/s p50 / p90 / p99 (ms)`, (r) => `${f(r.fixed.p50)} / ${f(r.fixed.p90)} / ${f(r.fixed.p99)}`],
    [`added p50 / p90 / p99 over direct (ms)`, (r) => (r === direct ? '-' : `${f(added(r, 'p50'))} / ${f(added(r, 'p90'))} / ${f(added(r, 'p99'))}`)],
    [`CPU per sidecar at ${RATE} req/s (cores)`, (r) => (r.sidecars.length ? r.fixedCpu.map((c) => f(c, 3)).join(' / ') : '-')],
    ['CPU per 1000 req/s, per sidecar (cores)', (r) => (r.sidecars.length ? r.fixedCpu.map((c) => f(c / (r.fixed.achievedRate / 1000), 3)).join(' / ') : '-')],
    [`RSS per sidecar at ${RATE} req/s (MB)`, (r) => (r.sidecars.length ? r.memory.map((m) => f(m.rssMb, 1)).join(' / ') : '-')],
    [`USS per sidecar at ${RATE} req/s (MB)`, (r) => (r.sidecars.length ? r.memory.map((m) => f(m.ussMb, 1)).join(' / ') : '-')],
    ['RSS after saturation (MB)', (r) => (r.sidecars.length ? r.memoryAfterSaturation.map((m) => f(m.rssMb, 1)).join(' / ') : '-')],
  ];
  const runs = [direct, haproxy, tsmesh];
  const w0 = Math.max(...rows.map(([l]) => l.length)) + 2;
  const w = 24;
  console.log(`\nPOST ${BODY_BYTES} B -> ${BODY_BYTES} B; saturation: wrk ${WRK_THREADS} thread(s), ${CONNECTIONS} connections, ${SECONDS}s; fixed rate: open loop, ${RATE} req/s, ${SECONDS}s.`);
  console.log(`Sidecar figures are client / server. CPUs: ${PIN ? 'load, app, control planes on CPU 0; sidecars on CPU 1' : 'not pinned'}.\n`);
  console.log(''.padEnd(w0) + runs.map((r) => r.name.padStart(w)).join(''));
  for (const [label, cell] of rows) console.log(label.padEnd(w0) + runs.map((r) => cell(r).padStart(w)).join(''));

  const throughput = ratio(tsmesh.wrk.requestsPerSecond, haproxy.wrk.requestsPerSecond);
  // Added p99s of a few tenths of a millisecond are noisy; a floor of 0.05 ms keeps the ratio finite.
  const addedP99 = ratio(Math.max(added(tsmesh, 'p99'), 0), Math.max(added(haproxy, 'p99'), 0.05));
  const rss = Math.max(...tsmesh.memory.map((m) => m.rssMb));
  const cpuPerKrps = Math.max(...tsmesh.fixedCpu) / (tsmesh.fixed.achievedRate / 1000);
  const haproxyProxyCore = haproxy.saturationCpu.reduce((a, b) => a + b, 0);
  const mark = (ok: boolean): string => (ok ? 'meets' : 'misses');
  console.log('\ntsmesh against HAProxy and the aims:');
  console.log(`  throughput          ${f(throughput)}x HAProxy's   (aim >= ${AIM.throughputVsHaproxy}x: ${mark(throughput >= AIM.throughputVsHaproxy)})`);
  console.log(`  added p99 @${RATE}/s   ${f(addedP99)}x HAProxy's   (aim <= ${AIM.addedP99VsHaproxy}x: ${mark(addedP99 <= AIM.addedP99VsHaproxy)})`);
  console.log(`  RSS per proxy       ${f(rss, 1)} MB (largest)   (aim <= ${AIM.rssMb} MB: ${mark(rss <= AIM.rssMb)})`);
  console.log(`  CPU per 1000 req/s  ${f(cpuPerKrps, 3)} cores (busier proxy)   (aim <= ${AIM.cpuPerKrps}: ${mark(cpuPerKrps <= AIM.cpuPerKrps)})`);
  const cores = availableParallelism();
  if (load[0] > 0.5)
    console.log(`  note: load average ${f(load[0])} before the run and ${f(load[1])} after, on ${cores} CPUs: other work shared the machine; latencies and throughput are noisy.`);
  if (PIN && haproxyProxyCore < 0.9)
    console.log(
      `  note: at saturation the HAProxy pair used ${f(haproxyProxyCore)} of its CPU: something else (the load side on CPU 0, or other work on the machine) held its throughput down.`,
    );
  console.log(`bench:sidecar throughput_vs_haproxy=${f(throughput, 3)} added_p99_vs_haproxy=${f(addedP99, 3)} rss_mb=${f(rss, 1)} cpu_per_krps=${f(cpuPerKrps, 3)}`);
}

async function profileRun(bench: Bench, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  chownSync(dir, PROXY_UID, PROXY_UID);
  const before = new Set(readdirSync(dir));
  console.log(`\nprofiling the tsmesh pair at saturation (--cpu-prof into ${dir}) ...`);
  const pair = await bench.startTsmeshPair(['--cpu-prof', '--cpu-prof-dir', dir], '-profiled');
  await bench.wrk(serviceUrl(), WARM_UP);
  const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);
  const from = monotonicUs();
  const wrk = await bench.wrk(serviceUrl(), SECONDS);
  const window = [from, monotonicUs()] as const;
  console.log(`  ${wrk.requestsPerSecond.toFixed(0)} req/s under the profiler; the figures below cover that phase only (no start-up, no warm-up)`);
  // SIGTERM: the proxy drains and exits, and V8 writes the profile on exit.
  for (const p of pair) await bench.net.stop(p, 10_000);
  const written = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && !before.has(f));
  const byPid = new Map(pair.map((p) => [String(p.pid), p.name]));
  for (const file of written) {
    // CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile
    const pid = /^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1] ?? '';
    console.log(`\n${byPid.get(pid) ?? 'tsmesh proxy'}: ${join(dir, file)}`);
    console.log(formatTop(topSelfTime(join(dir, file), 20, REPO, window)));
  }
  if (written.length === 0) console.log('  no profile was written; see the proxy logs in ' + bench.work);
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
      await bench.net?.destroy();
      if (process.env['BENCH_KEEP'] !== '1') rmSync(bench.work, { recursive: true, force: true });
    })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      console.error(`\nbench:sidecar: ${signal}, cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });

  try {
    const { haproxyTls } = await bench.prepare();
    bench.net = await BenchNet.create();
    const { client, server } = bench.net;
    console.log(`namespaces ${client} (${ADDRESSES.client}) and ${server} (${ADDRESSES.server}); ClusterIP ${ADDRESSES.clusterIp}:${SERVICE_PORT}`);

    const app = bench.startHaproxy('app', server, upstreamConfig(APP_PORT, bench.path('body.bin')), LOAD);
    const directUrl = `http://${ADDRESSES.server}:${APP_PORT}/`;
    await bench.waitThrough('the app', directUrl, [app]);
    const direct = await bench.scenario('direct', directUrl, []);

    // From here on both namespaces are meshed pods: every TCP connection is redirected.
    for (const ns of [client, server]) await must('ip', ['netns', 'exec', ns, ...TSMESH, 'init'], 60_000);

    const hServer = bench.startHaproxy('haproxy-server', server, serverSidecarConfig(INBOUND_PORT, APP_PORT, haproxyTls.server), SIDECAR);
    const hClient = bench.startHaproxy('haproxy-client', client, clientSidecarConfig(OUTBOUND_PORT, ADDRESSES.server, APP_PORT, haproxyTls.client), SIDECAR);
    await bench.waitThrough('a request through the HAProxy pair', serviceUrl(), [hClient, hServer, app]);
    const haproxy = await bench.scenario('haproxy', serviceUrl(), [hClient, hServer]);
    await bench.net.stop(hClient);
    await bench.net.stop(hServer);

    for (const ns of [client, server]) {
      const cp = bench.net.start(
        `control-plane-${ns === client ? 'client' : 'server'}`,
        ns,
        [...TSMESH, 'control-plane', '--ca-dir', bench.path('ca'), '--token-file', bench.path('tokens.yaml'), '--host', '127.0.0.1', '--port', '15012', '--admin-port', '15014'],
        bench.path(`control-plane-${ns === client ? 'client' : 'server'}.log`),
        LOAD,
      );
      await waitFor(
        'the control plane',
        async () => (await bench.net.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', 'http://127.0.0.1:15014/healthz'])).stdout === '200',
        20_000,
        [cp],
      );
    }
    const pair = await bench.startTsmeshPair();
    const tsmesh = await bench.scenario('tsmesh', serviceUrl(), pair);
    for (const p of pair) await bench.net.stop(p, 5000);

    report(direct, haproxy, tsmesh, [loadBefore, loadAverage()]);

    if (PROFILE !== '' && PROFILE !== '0') await profileRun(bench, PROFILE === '1' ? join(tmpdir(), `tsmesh-bench-sidecar-profile-${Date.now()}`) : PROFILE);
    return 0;
  } catch (e) {
    console.error(`bench:sidecar: ${(e as Error).message}`);
    if (process.env['BENCH_KEEP'] !== '1') console.error('(BENCH_KEEP=1 keeps the logs and files of a run)');
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
