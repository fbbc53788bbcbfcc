// The soak's verdict on one phase, from what was measured in it: the pass
// criteria of each kind of phase, the row the soak prints, and the object
// its final SOAK line carries. Pure: no process, no clock.
import type { RequestRecord } from '../netns/mesh-client.js';

export type PhaseKind = 'baseline' | 'fault' | 'calm';

/** What a phase must keep. Rates are shares of requests that succeeded. */
export interface Criteria {
  /** HTTP to the service whose replica is made to misbehave (retries and a circuit breaker). */
  api: number;
  /** HTTP to a service nothing is done to, called by the same pod: a bad service must not take its callers down. */
  backend: number;
  /** Opaque TCP round trips. */
  tcp: number;
  /** Tries the api replicas logged per request the client made (the retry budget allows 1.2x + 10/s). */
  maxAmplificationApi: number;
  /** The backend has no retry policy: its apps see each request once. */
  maxAmplificationBackend: number;
  /**
   * A proxy may hold this many more sockets at the end of the phase than at
   * most during the baseline (no leak). Not fewer: the client's HTTP/1.1
   * pool grows while requests stall (up to rate x timeout, 100) and keeps
   * those connections open; a flood's leak is in the thousands.
   */
  socketsOverBaseline?: number;
}

// One bad replica of three must stay hidden behind retries and the breaker;
// the 1% is what a breaker needs to see failures before it ejects.
export const CRITERIA: Readonly<Record<PhaseKind, Criteria>> = {
  baseline: { api: 1, backend: 1, tcp: 1, maxAmplificationApi: 1.3, maxAmplificationBackend: 1.01 },
  fault: { api: 0.99, backend: 0.999, tcp: 0.99, maxAmplificationApi: 1.3, maxAmplificationBackend: 1.01 },
  calm: { api: 0.999, backend: 0.999, tcp: 0.999, maxAmplificationApi: 1.3, maxAmplificationBackend: 1.01, socketsOverBaseline: 150 },
};

/**
 * The client's loads, all from pod web: HTTP/1.1 to api with every n-th
 * request an opaque TCP echo to api's replicas, HTTP/2 (h2c) to api, and
 * HTTP/1.1 to backend.
 */
export const LOADS = ['apiH1', 'apiH2', 'backend'] as const;
export type LoadName = (typeof LOADS)[number];

export interface ProxySample {
  /** Highest VmRSS seen in the phase, MB. */
  rssMb: number;
  /** Most sockets seen open in the phase. */
  sockets: number;
  /** Sockets open at the last sample of the phase. */
  socketsAtEnd: number;
}

export interface PhaseMeasures {
  name: string;
  kind: PhaseKind;
  /** Epoch ms. */
  startedAt: number;
  seconds: number;
  /** The requests each load made in the phase (by when they were due), and how many were due. */
  loads: Record<LoadName, RequestRecord[]>;
  planned: Record<LoadName, number>;
  /** Tries the apps logged for this phase's requests. */
  tries: { api: number; backend: number };
  /** By "<load>/<i>": the pods whose app logged a try of that request. */
  reached: ReadonlyMap<string, readonly string[]>;
  proxies: Record<string, ProxySample>;
  /** Readiness probes of every proxy in the phase, and the ones that did not answer 200. */
  ready: { probes: number; failed: string[] };
  /** What the phase's fault did, and failures of its own (a change that never arrived). */
  notes: string[];
  faultFailures: string[];
  /** The machine's 1-minute load average at the phase's end (2 CPUs are easily overcommitted). */
  loadAverage: number;
}

export interface PhaseRow {
  name: string;
  kind: PhaseKind;
  seconds: number;
  sent: number;
  http: { api: Share; backend: Share };
  tcp: Share;
  amplification: { api: number; backend: number };
  p99Ms: { apiH1: number; apiH2: number; backend: number };
  rssMb: Record<string, number>;
  sockets: Record<string, number>;
  ready: { probes: number; failed: number };
  loadAverage: number;
  /** Status codes and x-tsmesh-error values of failed requests, and the first errors, per load. */
  failures: Record<string, string>;
  notes: string[];
  failed: string[];
  ok: boolean;
}

export interface Share {
  ok: number;
  total: number;
}

const share = (records: readonly RequestRecord[]): Share => ({ ok: records.filter((r) => r.error === undefined).length, total: records.length });
const rate = (s: Share): number => (s.total === 0 ? 1 : s.ok / s.total);
const pct = (x: number): string => (x * 100).toFixed(2);

function p99(records: readonly RequestRecord[]): number {
  const ms = records.map((r) => r.end - r.start).sort((a, b) => a - b);
  return ms.length === 0 ? 0 : ms[Math.min(ms.length - 1, Math.ceil(ms.length * 0.99) - 1)]!;
}

const ofKind = (records: readonly RequestRecord[], kind: RequestRecord['kind']): RequestRecord[] => records.filter((r) => r.kind === kind);

/**
 * How a load's failures looked: when in the phase, which apps their tries
 * reached (none: the mesh never delivered them), answers by status and
 * x-tsmesh-error, then the first distinct errors.
 */
function describeFailures(load: LoadName, records: readonly RequestRecord[], m: PhaseMeasures): string | undefined {
  const failed = records.filter((r) => r.error !== undefined);
  if (failed.length === 0) return undefined;
  const count = (keys: (string | undefined)[]): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const k of keys) if (k !== undefined) out[k] = (out[k] ?? 0) + 1;
    return out;
  };
  const statuses = count(failed.map((r) => (r.status === undefined ? undefined : String(r.status))));
  const meshErrors = count(failed.map((r) => r.meshError));
  const reached = count(failed.filter((r) => r.kind === 'http').map((r) => m.reached.get(`${load}/${r.i}`)?.join('+') ?? 'no app'));
  const errors = [...new Set(failed.filter((r) => r.status === undefined).map((r) => `${r.kind}: ${r.error}`))].slice(0, 3);
  const parts = [
    ...(Object.keys(reached).length > 0 ? [`tries reached ${JSON.stringify(reached)}`] : []),
    ...(Object.keys(statuses).length > 0 ? [`statuses ${JSON.stringify(statuses)}`] : []),
    ...(Object.keys(meshErrors).length > 0 ? [`x-tsmesh-error ${JSON.stringify(meshErrors)}`] : []),
    ...errors,
  ];
  const offset = (t: number): string => `+${((t - m.startedAt) / 1000).toFixed(1)}s`;
  const starts = failed.map((r) => r.start);
  return `${failed.length} failed, started ${offset(Math.min(...starts))} to ${offset(Math.max(...starts))}: ${parts.join('; ')}`;
}

/** Judges a phase against the criteria of its kind; `baselineSockets` is each proxy's most sockets during the baseline. */
export function judgePhase(m: PhaseMeasures, baselineSockets: Record<string, number> | undefined): PhaseRow {
  const c = CRITERIA[m.kind];
  const api = share([...ofKind(m.loads.apiH1, 'http'), ...ofKind(m.loads.apiH2, 'http')]);
  const backend = share(ofKind(m.loads.backend, 'http'));
  const tcp = share(ofKind(m.loads.apiH1, 'tcp'));
  const amplification = { api: api.total === 0 ? 0 : m.tries.api / api.total, backend: backend.total === 0 ? 0 : m.tries.backend / backend.total };
  const failed: string[] = [];
  // Requests the client could not even make (it was starved of CPU, or died) make the phase no measure.
  for (const load of LOADS) {
    if (m.loads[load].length < 0.9 * m.planned[load]) failed.push(`the ${load} load made ${m.loads[load].length} of the ${m.planned[load]} requests due`);
  }
  const atLeast = (what: string, s: Share, min: number): void => {
    if (rate(s) < min) failed.push(`${what} ${pct(rate(s))}% < ${pct(min)}% (${s.total - s.ok} of ${s.total} failed)`);
  };
  atLeast('api HTTP', api, c.api);
  atLeast('backend HTTP', backend, c.backend);
  atLeast('TCP', tcp, c.tcp);
  if (amplification.api > c.maxAmplificationApi) failed.push(`api amplification ${amplification.api.toFixed(3)} > ${c.maxAmplificationApi}`);
  if (amplification.backend > c.maxAmplificationBackend) failed.push(`backend amplification ${amplification.backend.toFixed(3)} > ${c.maxAmplificationBackend}`);
  if (m.ready.failed.length > 0) failed.push(`/ready failed ${m.ready.failed.length} of ${m.ready.probes} probes: ${m.ready.failed.slice(0, 4).join(', ')}`);
  if (c.socketsOverBaseline !== undefined && baselineSockets !== undefined) {
    for (const [pod, s] of Object.entries(m.proxies)) {
      const limit = (baselineSockets[pod] ?? 0) + c.socketsOverBaseline;
      if (s.socketsAtEnd > limit) failed.push(`proxy ${pod} holds ${s.socketsAtEnd} sockets at the end (baseline at most ${baselineSockets[pod]})`);
    }
  }
  failed.push(...m.faultFailures);
  const failures: Record<string, string> = {};
  for (const load of LOADS) {
    const d = describeFailures(load, m.loads[load], m);
    if (d !== undefined) failures[load] = d;
  }
  const pods = Object.keys(m.proxies);
  return {
    name: m.name,
    kind: m.kind,
    seconds: m.seconds,
    sent: LOADS.reduce((sum, load) => sum + m.loads[load].length, 0),
    http: { api, backend },
    tcp,
    amplification: { api: Number(amplification.api.toFixed(3)), backend: Number(amplification.backend.toFixed(3)) },
    p99Ms: { apiH1: p99(ofKind(m.loads.apiH1, 'http')), apiH2: p99(ofKind(m.loads.apiH2, 'http')), backend: p99(ofKind(m.loads.backend, 'http')) },
    rssMb: Object.fromEntries(pods.map((p) => [p, Math.round(m.proxies[p]!.rssMb)])),
    sockets: Object.fromEntries(pods.map((p) => [p, m.proxies[p]!.sockets])),
    ready: { probes: m.ready.probes, failed: m.ready.failed.length },
    loadAverage: m.loadAverage,
    failures,
    notes: m.notes,
    failed,
    ok: failed.length === 0,
  };
}

const COLUMNS: readonly [string, number][] = [
  ['phase', 16],
  ['s', 3],
  ['sent', 5],
  ['api ok%', 7],
  ['be ok%', 7],
  ['tcp ok%', 7],
  ['amp api/be', 10],
  ['p99 ms h1/h2/be', 16],
  ['RSS MB', 0],
  ['sockets', 0],
  ['ready', 7],
  ['load', 5],
  ['result', 0],
];

/** The table's header; the RSS and socket columns list the proxies in `pods` order. */
export function tableHeader(pods: readonly string[]): string {
  const cells = COLUMNS.map(([name, width]) => {
    const w = name === 'RSS MB' || name === 'sockets' ? pods.length * 5 - 1 : width;
    return name.padEnd(w);
  });
  return `${cells.join(' ')}\n${' '.repeat(cells.slice(0, 8).join(' ').length + 1)}(${pods.join(' ')})`;
}

/** One row of the table, then the notes and failures under it. */
export function formatRow(r: PhaseRow, pods: readonly string[]): string {
  const list = (xs: Record<string, number>): string => pods.map((p) => String(xs[p] ?? '-').padStart(4)).join(' ');
  const cells = [
    r.name.padEnd(16),
    String(r.seconds).padStart(3),
    String(r.sent).padStart(5),
    pct(rate(r.http.api)).padStart(7),
    pct(rate(r.http.backend)).padStart(7),
    pct(rate(r.tcp)).padStart(7),
    `${r.amplification.api.toFixed(2)}/${r.amplification.backend.toFixed(2)}`.padStart(10),
    `${r.p99Ms.apiH1}/${r.p99Ms.apiH2}/${r.p99Ms.backend}`.padStart(16),
    list(r.rssMb),
    list(r.sockets),
    `${r.ready.probes - r.ready.failed}/${r.ready.probes}`.padStart(7),
    r.loadAverage.toFixed(1).padStart(5),
    r.ok ? 'ok' : 'FAIL',
  ];
  const below = [...r.notes.map((n) => `note: ${n}`), ...Object.entries(r.failures).map(([load, d]) => `${load}: ${d}`), ...r.failed.map((f) => `FAIL: ${f}`)];
  return [cells.join(' '), ...below.map((l) => `    ${l}`)].join('\n');
}
