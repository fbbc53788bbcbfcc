// Figures the sidecar benchmark reads: a process's CPU time and memory from
// /proc, wrk's report, percentiles.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat's utime and stime. */
export const CLK_TCK = ((): number => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** utime and stime of every thread of the process, in seconds. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)", which may itself hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
}

/** The main thread's time on a CPU and time ready but waiting for one (/proc/PID/schedstat), in seconds. */
export function mainThreadSched(pid: number): { onCpu: number; waiting: number } {
  const [onCpu, waiting] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return { onCpu: (onCpu ?? 0) / 1e9, waiting: (waiting ?? 0) / 1e9 };
}

/** utime + stime of every thread of the process, in seconds. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

export interface Memory {
  /** VmRSS: resident pages, shared ones (libraries, the binary) included. */
  rssMb: number;
  /** Unique set size: Private_Clean + Private_Dirty, what stopping the process would free. */
  ussMb: number;
}

function kb(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (!m) throw new Error(`no ${field} in /proc`);
  return Number(m[1]);
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rssMb: kb(status, 'VmRSS') / 1024, ussMb: (kb(rollup, 'Private_Clean') + kb(rollup, 'Private_Dirty')) / 1024 };
}

/** The larger of each figure: memory is sampled after every slice of a phase and the peak reported. */
export function peakMemory(a: Memory | undefined, b: Memory): Memory {
  return a ? { rssMb: Math.max(a.rssMb, b.rssMb), ussMb: Math.max(a.ussMb, b.ussMb) } : b;
}

const QUANTILES = 1000;

/**
 * wrk's Lua script for the benchmark: POST a body of `bodyBytes`, and when done
 * print one JSON line: requests, duration, errors, and the latency at 1000
 * evenly spaced quantiles (microseconds), so that several runs can be merged.
 */
export function wrkScript(bodyBytes: number): string {
  return `wrk.method = "POST"
wrk.body = string.rep("x", ${bodyBytes})
wrk.headers["Content-Type"] = "application/octet-stream"

done = function(summary, latency, requests)
  local e = summary.errors
  local q = {}
  for i = 1, ${QUANTILES} do q[i] = latency:percentile((i - 0.5) * 100 / ${QUANTILES}) end
  io.write(string.format('{"requests":%d,"durationUs":%d,"errors":%d,"quantilesUs":[%s]}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status, table.concat(q, ",")))
end
`;
}


export interface WrkRun {
  requests: number;
  durationUs: number;
  /** Socket errors, timeouts and answers other than 2xx/3xx. */
  errors: number;
  quantilesUs: number[];
}

export function parseWrkJson(out: string): WrkRun {
  const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
  if (!line) throw new Error(`wrk printed no summary:\n${out}`);
  return JSON.parse(line) as WrkRun;
}

export interface WrkReport {
  requestsPerSecond: number;
  requests: number;
  errors: number;
  /** Milliseconds, over every run merged. */
  p50: number;
  p90: number;
  p99: number;
}

/** Several wrk runs as one: requests over the summed durations; latencies merged, each run weighted by its requests. */
export function mergeWrk(runs: readonly WrkRun[]): WrkReport {
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  const seconds = runs.reduce((s, r) => s + r.durationUs, 0) / 1e6;
  const points = runs.flatMap((r) => r.quantilesUs.map((us) => ({ ms: us / 1000, weight: r.requests / r.quantilesUs.length }))).sort((a, b) => a.ms - b.ms);
  const total = points.reduce((s, p) => s + p.weight, 0);
  const at = (p: number): number => {
    let seen = 0;
    for (const point of points) {
      seen += point.weight;
      if (seen >= (p / 100) * total) return point.ms;
    }
    return points[points.length - 1]?.ms ?? Number.NaN;
  };
  return { requestsPerSecond: requests / seconds, requests, errors: runs.reduce((s, r) => s + r.errors, 0), p50: at(50), p90: at(90), p99: at(99) };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
