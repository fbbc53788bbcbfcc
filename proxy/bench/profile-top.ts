// Top self-time functions of a V8 CPU profile (node --cpu-prof):
//   tsx proxy/bench/profile-top.ts FILE.cpuprofile [N]
// Also used by `BENCH_PROFILE=1 npm run bench:sidecar`.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  /** CLOCK_MONOTONIC, microseconds (process.hrtime's clock). */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  /** Share of the busy time (idle excluded). */
  percent: number;
}

function shortUrl(url: string, root: string): string {
  let u = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (u.startsWith(root)) u = u.slice(root.length);
  const nm = u.lastIndexOf('node_modules/');
  return nm >= 0 ? u.slice(nm + 'node_modules/'.length) : u;
}

/** Monotonic microseconds (process.hrtime.bigint() / 1000n), both ends included. */
export type Window = readonly [number, number];

/** Self time per function; only samples inside `window` when one is given (e.g. to leave start-up out). */
/** Where a frame's code lives: a package, Node's own JavaScript, a tsmesh folder, or native code. */
function sourceOf(url: string, root: string): string {
  if (url === '') return 'native (C++, syscalls) and V8';
  if (url.startsWith('node:')) return 'node: internals (JavaScript)';
  if (url.startsWith('wasm://')) return 'wasm (undici\'s llhttp parser)';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('node_modules/');
  const rel = path.startsWith(root) ? path.slice(root.length) : path;
  const project = /(?:^|\/)dist\/(.+)\/[^/]+$/.exec(rel) ?? /^([a-z]+(?:\/[a-z-]+)?)\/[^/]+$/.exec(rel);
  if (project) return `tsmesh ${project[1]}/`;
  if (nm >= 0) {
    const parts = path.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return rel;
}

export interface Profile {
  busyMs: number;
  idleMs: number;
  top: SelfTime[];
  /** Self time summed by where the code lives. */
  bySource: { source: string; ms: number; percent: number }[];
}

export function topSelfTime(file: string, n = 15, root = '', window?: Window): Profile {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  const bySource = new Map<string, number>();
  let idleUs = 0;
  let totalUs = 0;
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    t += us;
    if (window && (t < window[0] || t > window[1])) return;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      return;
    }
    const source = ['(garbage collector)', '(program)'].includes(frame.functionName) ? frame.functionName : sourceOf(frame.url, root);
    bySource.set(source, (bySource.get(source) ?? 0) + us);
    const where = frame.url ? `${shortUrl(frame.url, root)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName}|${where}`;
    const entry = self.get(key) ?? { name: frame.functionName || '(anonymous)', where, us: 0 };
    entry.us += us;
    self.set(key, entry);
  });
  const busyUs = totalUs - idleUs;
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, percent: busyUs > 0 ? (100 * e.us) / busyUs : 0 }));
  const share = (us: number): number => (busyUs > 0 ? (100 * us) / busyUs : 0);
  return {
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    top,
    bySource: [...bySource].sort((a, b) => b[1] - a[1]).map(([source, us]) => ({ source, ms: us / 1000, percent: share(us) })),
  };
}

export function formatTop(result: Profile): string {
  const lines = [`  busy ${result.busyMs.toFixed(0)} ms, idle ${result.idleMs.toFixed(0)} ms; top self time (share of busy):`];
  for (const e of result.top) lines.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(6)} ms  ${e.name}  ${e.where}`);
  lines.push('  self time by where the code lives:');
  for (const e of result.bySource.slice(0, 10)) lines.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(6)} ms  ${e.source}`);
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, count] = process.argv.slice(2);
  if (!file) {
    console.error('usage: profile-top.ts FILE.cpuprofile [N]');
    process.exit(2);
  }
  console.log(formatTop(topSelfTime(file, Number(count ?? 15), fileURLToPath(new URL('../../', import.meta.url)))));
}
