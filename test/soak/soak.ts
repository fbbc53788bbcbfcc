// The overload and cancellation soak: `npm run soak` (not part of `npm test`).
//
// A mesh in network namespaces on the control plane's stream
// (test/netns/stream-lab.ts): pod "web" calls service "api" (api1-api3,
// TrafficPolicy: 3 attempts on 5xx, a circuit breaker) and service
// "backend" (be1, be2, no policy), under open-loop load the whole time
// (test/netns/mesh-client.ts, a 1 s client timeout): HTTP/1.1 to api with
// every tenth request an opaque TCP echo to api's replicas, HTTP/2 to api,
// HTTP/1.1 to backend. Faults come one phase at a time, each followed by a
// calm phase: api1 hangs, answers 500, answers 300 ms late, resets its
// connections, has its app killed and restarted; the control plane is
// killed and restarted with a change made while it was down; 1,000 idle
// connections go from web to api's ClusterIP (web's outbound listener), then
// from be1 to api1's admin port.
//
// One row per phase: the client's success (api, backend, TCP), requests sent,
// amplification (tries the apps logged per client request), p99 latency per
// load, each proxy's peak RSS and open sockets (from /proc, by PID), the
// /ready probes of every proxy (each second, 1 s timeout, as kubelet), and
// the verdict against the phase's criteria (report.ts). Then one line
// `SOAK {...}` with every row as JSON. Exit 0 when every criterion held, 1
// when one failed (all rows are printed anyway), 2 when it cannot run here
// (it needs root for network namespaces; the reason is printed).
//
//   npm run soak                          fault phases of 15 s, calm ones of 8 s (about 4 minutes)
//   npm run soak -- --phase-seconds 60    longer phases
//   npm run soak -- --minutes 20          phases sized to take about that long
//
// Every process is started in the lab and killed by PID, and the namespaces
// removed, at the end, on a failure, and on SIGINT or SIGTERM.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Managed } from '../../lib/netns.js';
import type { LoadOptions, RequestRecord } from '../netns/mesh-client.js';
import { ADMIN_PORT, APP_ECHO_PORT, APP_HTTP_PORT, APP_USER, K8S_NAMESPACE, PROXY_USER, sleep } from '../netns/mesh-lab.js';
import { netnsUnavailable } from '../netns/netns.js';
import { StreamLab, type MeshDocument } from '../netns/stream-lab.js';
import { takeLines } from './lines.js';
import { appMode, appRestart, BAD_REPLICA, controlPlaneRestart, flood, hang, type Fault, type FaultContext } from './faults.js';
import { nodePid, openSockets, rssMb } from './proc.js';
import { formatRow, judgePhase, LOADS, tableHeader, type LoadName, type PhaseKind, type PhaseRow, type ProxySample } from './report.js';

const PODS = ['web', 'api1', 'api2', 'api3', 'be1', 'be2'] as const;
const API = ['api1', 'api2', 'api3'];
const SERVICES: Record<string, { ip: string; pods: readonly string[]; port: number; protocol: string; targetPort: number }> = {
  api: { ip: '10.96.50.10', pods: API, port: 80, protocol: 'auto', targetPort: APP_HTTP_PORT },
  'api-tcp': { ip: '10.96.50.11', pods: API, port: APP_ECHO_PORT, protocol: 'tcp', targetPort: APP_ECHO_PORT },
  backend: { ip: '10.96.50.20', pods: ['be1', 'be2'], port: 80, protocol: 'auto', targetPort: APP_HTTP_PORT },
};
/** Added while the control plane is down. */
const LATE = { name: 'late', ip: '10.96.50.30', pods: ['be1', 'be2'] };

const API_POLICY = {
  name: 'api-resilience',
  namespace: K8S_NAMESPACE,
  targetRef: { kind: 'Service', name: 'api' },
  spec: { retries: { attempts: 3, retryOn: ['5xx'] }, circuitBreaker: { consecutiveFailures: 5, ejectionTime: '5s' } },
};

/** Requests a second per load; the api HTTP/1.1 load makes every TCP_EVERY-th request a TCP echo. */
const RATES: Record<LoadName, number> = { apiH1: 100, apiH2: 25, backend: 25 };
const TCP_EVERY = 10;
const CLIENT_TIMEOUT_MS = 1000;
/** The loads are started this long before they begin (tsx takes a while on a busy machine) and wait. */
const LOAD_LEAD_MS = 20_000;
// From a cold start at full rate the first seconds lose requests while connections pile up (about 8 s measured).
const WARM_UP_MS = 15_000;

interface PhaseSpec {
  name: string;
  kind: PhaseKind;
  seconds: number;
  fault?: Fault;
}

function meshDocument(lab: StreamLab, withLate: boolean): MeshDocument {
  const service = (name: string, ip: string, pods: readonly string[], port: number, protocol: string, targetPort: number): Record<string, unknown> => ({
    name,
    namespace: K8S_NAMESPACE,
    clusterIPs: [ip],
    ports: [{ port, name: protocol === 'tcp' ? 'tcp' : 'http', protocol, targetPort }],
    endpoints: pods.map((p) => lab.endpoint(p)),
  });
  return {
    trafficPolicies: [API_POLICY],
    services: [
      ...Object.entries(SERVICES).map(([name, s]) => service(name, s.ip, s.pods, s.port, s.protocol, s.targetPort)),
      ...(withLate ? [service(LATE.name, LATE.ip, LATE.pods, 80, 'auto', APP_HTTP_PORT)] : []),
    ],
  };
}

function schedule(faultSeconds: number): PhaseSpec[] {
  const calm = Math.max(5, Math.round(faultSeconds / 2));
  const faults: [string, Fault][] = [
    ['hang', hang()],
    ['errors', appMode({ fail: { status: 500 } }, { fail: null })],
    ['slow', appMode({ delayMs: 300 }, { delayMs: 0 })],
    ['reset', appMode({ reset: true }, { reset: false })],
    ['app-restart', appRestart(3000)],
    [
      'cp-restart',
      controlPlaneRestart(
        (l) => meshDocument(l, true),
        async (l) => (await l.waitConfig('web', `service ${LATE.name}`, (c) => c.services.some((s) => s.name === LATE.name && s.endpoints.length > 0), 15_000, 200)).ms,
      ),
    ],
    ['flood-out', flood('web', APP_USER, () => ({ host: SERVICES.api!.ip, port: 80, label: "api's ClusterIP (web's outbound listener)" }), API)],
    ['flood-admin', flood('be1', PROXY_USER, (l) => ({ host: l.addr[BAD_REPLICA]!, port: ADMIN_PORT, label: `${BAD_REPLICA}'s admin port` }))],
  ];
  return [
    { name: 'baseline', kind: 'baseline', seconds: faultSeconds },
    ...faults.flatMap(([name, fault]): PhaseSpec[] => [
      { name, kind: 'fault', seconds: faultSeconds, fault },
      { name: `calm/${name}`, kind: 'calm', seconds: calm },
    ]),
  ];
}

/** The phase a moment falls in, given every phase's end; -1 before the first. */
function phaseAt(ends: readonly number[], starts0: number, t: number): number {
  if (t < starts0) return -1;
  const k = ends.findIndex((end) => t < end);
  return k < 0 ? ends.length - 1 : k;
}

interface PhaseStats {
  proxies: Record<string, ProxySample>;
  probes: number;
  failed: string[];
}

/**
 * Each second: every proxy's RSS and sockets from /proc (by PID), and the
 * answers of prober.ts, which asks every proxy's /ready as kubelet does;
 * kept per phase.
 */
class Sampler {
  private readonly stats = new Map<number, PhaseStats>();
  private readonly pids = new Map<Managed, number>();
  private readonly prober: Managed;
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly lab: StreamLab,
    private readonly starts: readonly number[],
    private readonly ends: readonly number[],
  ) {
    const targets = PODS.map((pod) => `${pod}=${lab.addr[pod]}:${ADMIN_PORT}`);
    this.prober = lab.spawnIn('prober', 'cp', [process.execPath, '--import', 'tsx', 'test/soak/prober.ts', '1000', ...targets]);
    this.done = this.loop();
  }

  of(phase: number): PhaseStats {
    let s = this.stats.get(phase);
    if (s === undefined) this.stats.set(phase, (s = { proxies: {}, probes: 0, failed: [] }));
    return s;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    await this.prober.stop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const next = Date.now() + 1000;
      const phase = phaseAt(this.ends, this.starts[0]!, Date.now());
      if (phase >= 0) await Promise.all(PODS.map((pod) => this.sample(pod, phase)));
      this.readProbes();
      await sleep(next - Date.now());
    }
  }

  private readProbes(): void {
    for (const line of takeLines(this.prober, (l) => l.startsWith('{"probe":'))) {
      const p = JSON.parse(line) as { probe: string; at: number; ms: number; status: number; error?: string };
      const phase = phaseAt(this.ends, this.starts[0]!, p.at);
      if (phase < 0) continue;
      const s = this.of(phase);
      s.probes++;
      if (p.status !== 200) s.failed.push(`${p.probe} ${p.status || p.error} at +${((p.at - this.starts[phase]!) / 1000).toFixed(1)}s`);
    }
  }

  private async sample(pod: string, phase: number): Promise<void> {
    const proxy = this.lab.proxies[pod];
    if (proxy?.child.pid === undefined) return;
    let pid = this.pids.get(proxy);
    if (pid === undefined) {
      pid = await nodePid(proxy.child.pid);
      if (pid === undefined) return;
      this.pids.set(proxy, pid);
    }
    const [rss, sockets] = await Promise.all([rssMb(pid), openSockets(pid)]);
    if (rss === undefined || sockets === undefined) return;
    const p = (this.of(phase).proxies[pod] ??= { rssMb: 0, sockets: 0, socketsAtEnd: 0 });
    p.rssMb = Math.max(p.rssMb, rss);
    p.sockets = Math.max(p.sockets, sockets);
    p.socketsAtEnd = sockets;
  }
}

/** The requests of a load whose due time falls in each phase, and the tries the apps logged for them. */
class Ledger {
  private readonly records = new Map<number, Record<LoadName, RequestRecord[]>>();
  private readonly tries = new Map<number, { api: number; backend: number }>();
  /** Per phase, by "<load>/<i>": the pods whose app logged a try of that request. */
  private readonly reached = new Map<number, Map<string, string[]>>();
  /** Every app process seen, with its pod: a restarted app's old process is read to its end. */
  private readonly apps = new Map<Managed, string>();

  /** `startAt`: when the loads began; `starts` and `ends`: the phases'. */
  constructor(
    private readonly startAt: number,
    private readonly starts: readonly number[],
    private readonly ends: readonly number[],
  ) {}

  /** Request i of a load was due at startAt + i / rate (open loop); the phase is the one that time falls in (-1: the warm-up). */
  phaseOf(load: LoadName, i: number): number {
    return phaseAt(this.ends, this.starts[0]!, this.startAt + (i * 1000) / RATES[load]);
  }

  /** Reads what the loads and the apps printed since the last call. */
  collect(loads: Record<LoadName, Managed>, apps: Readonly<Record<string, Managed>>): void {
    for (const load of LOADS) {
      for (const line of takeLines(loads[load], (l) => l.startsWith('{"i":'))) {
        const r = JSON.parse(line) as RequestRecord;
        const phase = this.phaseOf(load, r.i);
        if (phase >= 0) this.of(this.records, phase, () => ({ apiH1: [], apiH2: [], backend: [] }))[load].push(r);
      }
    }
    for (const [pod, app] of Object.entries(apps)) this.apps.set(app, pod);
    for (const [app, pod] of this.apps) {
      for (const line of takeLines(app, (l) => /"event":"(request|response|echo)"/.test(l))) {
        const m = /"event":"request".*"path":"\/(apiH1|apiH2|backend)\/(\d+)"/.exec(line);
        if (!m) continue;
        const load = m[1] as LoadName;
        const phase = this.phaseOf(load, Number(m[2]));
        if (phase < 0) continue;
        const t = this.of(this.tries, phase, () => ({ api: 0, backend: 0 }));
        if (load === 'backend') t.backend++;
        else t.api++;
        const reached = this.of(this.reached, phase, () => new Map<string, string[]>());
        const key = `${load}/${m[2]}`;
        reached.set(key, [...(reached.get(key) ?? []), pod]);
      }
    }
  }

  /** Hands over a phase's figures and forgets them. */
  take(phase: number): { records: Record<LoadName, RequestRecord[]>; tries: { api: number; backend: number }; reached: Map<string, string[]> } {
    const out = {
      records: this.records.get(phase) ?? { apiH1: [], apiH2: [], backend: [] },
      tries: this.tries.get(phase) ?? { api: 0, backend: 0 },
      reached: this.reached.get(phase) ?? new Map<string, string[]>(),
    };
    this.records.delete(phase);
    this.tries.delete(phase);
    this.reached.delete(phase);
    return out;
  }

  private of<T>(by: Map<number, T>, phase: number, make: () => T): T {
    let v = by.get(phase);
    if (v === undefined) by.set(phase, (v = make()));
    return v;
  }
}

function loadOptions(load: LoadName, seconds: number, startAt: number): LoadOptions {
  const service = load === 'backend' ? SERVICES.backend! : SERVICES.api!;
  return {
    origin: `http://${service.ip}`,
    path: `/${load}/{i}`,
    mode: 'rate',
    ratePerSecond: RATES[load],
    durationMs: seconds * 1000,
    maxRequests: RATES[load] * seconds + 10,
    timeoutMs: CLIENT_TIMEOUT_MS,
    // Sockets enough that a hung replica's requests never queue behind each other in the client.
    concurrency: 512,
    startAt,
    progress: true,
    ...(load === 'apiH2' ? { http2: true } : {}),
    ...(load === 'apiH1' ? { tcp: { host: SERVICES['api-tcp']!.ip, port: APP_ECHO_PORT, every: TCP_EVERY } } : {}),
  };
}

function parseOptions(): { faultSeconds: number } {
  const { values } = parseArgs({ options: { 'phase-seconds': { type: 'string' }, minutes: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log('usage: npm run soak [-- --phase-seconds N | --minutes M]   (fault phases of N s, default 15; calm phases half as long)');
    process.exit(0);
  }
  const number = (flag: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      console.error(`soak: --${flag} must be a number >= ${min}, not ${JSON.stringify(v)}`);
      process.exit(2);
    }
    return n;
  };
  if (values.minutes !== undefined) {
    // 9 phases of N s and 8 calm ones of N/2 s: 13 N seconds.
    return { faultSeconds: Math.max(10, Math.round((number('minutes', values.minutes, 1) * 60) / 13)) };
  }
  return { faultSeconds: Math.round(number('phase-seconds', values['phase-seconds'] ?? '15', 10)) };
}

let lab: StreamLab | undefined;
let sampler: Sampler | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = (): Promise<void> =>
  (cleaning ??= (async () => {
    await sampler?.stop();
    await lab?.destroy();
  })());

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    console.error(`soak: ${signal}: stopping every process of the lab and removing its namespaces`);
    void cleanup().finally(() => process.exit(code));
  });
}

async function runPhases(phases: readonly PhaseSpec[], l: StreamLab): Promise<PhaseRow[]> {
  const rows: PhaseRow[] = [];
  const errors: unknown[] = [];
  let baselineSockets: Record<string, number> | undefined;
  // One load per kind for the whole soak: a process started per phase costs CPU a busy machine does not have.
  // Its first seconds (first connections, compilation) come before the baseline and are not judged.
  const t0 = Date.now() + LOAD_LEAD_MS;
  const starts: number[] = [];
  let t = t0 + WARM_UP_MS;
  for (const p of phases) {
    starts.push(t);
    t += p.seconds * 1000;
  }
  const ends = [...starts.slice(1), t];
  const seconds = (t - t0) / 1000;
  const loads = Object.fromEntries(LOADS.map((load) => [load, l.startLoad('web', loadOptions(load, seconds, t0))])) as Record<LoadName, Managed>;
  await Promise.all(LOADS.map((load) => loads[load].line((line) => line.startsWith('{"started":'), LOAD_LEAD_MS)));
  const ledger = new Ledger(t0, starts, ends);
  const s = (sampler = new Sampler(l, starts, ends));

  const finish = async (i: number, notes: string[], faultFailures: string[], loadAverage: number): Promise<void> => {
    const p = phases[i]!;
    // The phase's last requests end within the client's timeout; their retries reach the apps by then too.
    await sleep(ends[i]! + CLIENT_TIMEOUT_MS + 1500 - Date.now());
    ledger.collect(loads, l.apps);
    const { records, tries, reached } = ledger.take(i);
    const stats = s.of(i);
    const row = judgePhase(
      {
        name: p.name,
        kind: p.kind,
        startedAt: starts[i]!,
        seconds: p.seconds,
        loads: records,
        planned: Object.fromEntries(LOADS.map((load) => [load, Math.round(RATES[load] * p.seconds)])) as Record<LoadName, number>,
        tries,
        reached,
        proxies: stats.proxies,
        ready: { probes: stats.probes, failed: stats.failed },
        notes,
        faultFailures,
        loadAverage,
      },
      baselineSockets,
    );
    if (p.kind === 'baseline') baselineSockets = row.sockets;
    rows.push(row);
    console.log(formatRow(row, PODS));
  };

  console.log(tableHeader(PODS));
  let printed = Promise.resolve();
  for (let i = 0; i < phases.length; i++) {
    const p = phases[i]!;
    const end = ends[i]!;
    await sleep(starts[i]! - Date.now());
    const notes: string[] = [];
    const faultFailures: string[] = [];
    const ctx: FaultContext = { lab: l, startedAt: starts[i]!, ms: p.seconds * 1000, note: (n) => notes.push(n), fail: (f) => faultFailures.push(f) };
    const injected = (p.fault?.inject(ctx) ?? Promise.resolve()).catch((e: Error) => ctx.fail(`${p.name}: ${e.message.split('\n')[0]}`));
    await sleep(end - Date.now());
    const loadAverage = Number((await readFile('/proc/loadavg', 'utf8')).split(' ')[0]);
    await injected;
    if (Date.now() - end > 500) ctx.note(`the fault's actions ended ${((Date.now() - end) / 1000).toFixed(1)} s after the phase`);
    await p.fault?.revert?.(ctx).catch((e: Error) => ctx.fail(`undoing ${p.name}: ${e.message.split('\n')[0]}`));
    // Rows come out in order, each once its requests have ended, while the next phase runs.
    printed = printed.then(() => finish(i, notes, faultFailures, loadAverage)).catch((e: unknown) => void errors.push(e));
  }
  await printed;
  for (const load of LOADS) await l.loadSummary(loads[load], 60_000);
  if (errors.length > 0) throw errors[0];
  return rows;
}

async function main(): Promise<number> {
  const { faultSeconds } = parseOptions();
  const why = await netnsUnavailable();
  if (why !== undefined) {
    console.error(`soak: skipped: ${why}`);
    return 2;
  }
  const phases = schedule(faultSeconds);
  const loadSeconds = phases.reduce((sum, p) => sum + p.seconds, 0);
  const rate = RATES.apiH1 + RATES.apiH2 + RATES.backend;
  console.log(
    `soak: ${phases.length} phases, ${loadSeconds} s of load at ${rate} req/s (api: HTTP/1.1 ${RATES.apiH1}/s, every ${TCP_EVERY}th a TCP echo; ` +
      `HTTP/2 ${RATES.apiH2}/s; backend ${RATES.backend}/s), client timeout ${CLIENT_TIMEOUT_MS} ms; node ${process.version}`,
  );
  lab = await StreamLab.create({
    tag: 'soak',
    subnet: '10.244.50',
    serviceCidr: '10.96.50.0/24',
    pods: [
      { name: 'web', host: 11, serviceAccount: 'web' },
      ...API.map((name, k) => ({ name, host: 21 + k, serviceAccount: 'api', app: true })),
      { name: 'be1', host: 31, serviceAccount: 'backend', app: true },
      { name: 'be2', host: 32, serviceAccount: 'backend', app: true },
    ],
    mesh: { services: [] },
  });
  const l = lab;
  await l.writeMesh(meshDocument(l, false));
  await l.waitConfig('web', 'every service and the api policy', (c) =>
    Object.keys(SERVICES).every((n) => c.services.some((s) => s.name === n && s.endpoints.length > 0 && (n !== 'api' || s.trafficPolicy?.name === API_POLICY.name))),
  );
  console.log(`soak: the mesh is up in ${(l.setupMs / 1000).toFixed(1)} s (control plane, ${PODS.length} pods with tsmesh init and tsmesh proxy on the stream)`);
  const rows = await runPhases(phases, l);
  const ok = rows.every((r) => r.ok);
  const failed = rows.filter((r) => !r.ok).map((r) => r.name);
  console.log(ok ? `soak: every phase held its criteria` : `soak: criteria failed in ${failed.join(', ')}`);
  console.log(`SOAK ${JSON.stringify({ ok, faultSeconds, rates: RATES, clientTimeoutMs: CLIENT_TIMEOUT_MS, node: process.version, phases: rows })}`);
  return ok ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`soak: ${(e as Error).stack ?? String(e)}`);
  if (lab !== undefined) console.error(lab.logs(20));
} finally {
  await cleanup();
}
process.exit(code);
