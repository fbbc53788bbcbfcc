// Golden metrics per edge (caller -> service) from the sidecars' /metrics:
// requests per second, success rate, p50/p99 latency, mTLS.
import { parseMetrics } from '../lib/prom-text.js';

export interface EdgeStats {
  source: string;
  destination: string;
  rps: number;
  successRate: number;
  p50Ms: number;
  p99Ms: number;
  mtls: boolean;
  /** The identities that answered (several behind a split). */
  destinationIdentities: string[];
}

/** Where a workload's inbound requests are kept in a sample. */
const INBOUND = '(inbound)';

interface Sample {
  requests: Map<string, { total: number; ok: number; mtls: boolean; identities: Set<string> }>;
  buckets: Map<string, Map<number, number>>;
  at: number;
}

async function sample(metricsText: () => Promise<string>): Promise<Sample> {
  const requests = new Map<string, { total: number; ok: number; mtls: boolean; identities: Set<string> }>();
  const buckets = new Map<string, Map<number, number>>();
  for (const { name, labels: l, value } of parseMetrics(await metricsText())) {
    // Inbound: what this workload's app itself answered, before any retry of its callers.
    const key = l.direction === 'outbound' ? l.destination_service! : INBOUND;
    if (name === 'tsmesh_requests_total') {
      const e = requests.get(key) ?? { total: 0, ok: 0, mtls: false, identities: new Set<string>() };
      e.total += value;
      if (/^[23]/.test(l.response_code ?? '')) e.ok += value;
      if (l.tls === 'true') e.mtls = true;
      if (l.destination_identity && l.direction === 'outbound') e.identities.add(l.destination_identity);
      requests.set(key, e);
    } else if (name === 'tsmesh_request_duration_seconds_bucket') {
      const b = buckets.get(key) ?? new Map<number, number>();
      const le = l.le === '+Inf' ? Infinity : Number(l.le);
      b.set(le, (b.get(le) ?? 0) + value);
      buckets.set(key, b);
    }
  }
  return { requests, buckets, at: Date.now() };
}

function quantileMs(now: Map<number, number> | undefined, before: Map<number, number> | undefined, q: number): number {
  if (!now) return NaN;
  const les = [...now.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (now.get(le) ?? 0) - (before?.get(le) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  for (const [i, le] of les.entries()) if (counts[i]! >= rank) return (le === Infinity ? les[les.length - 2]! : le) * 1000;
  return NaN;
}

/** Tracks each sidecar's metrics and reports the edges seen since the last call. */
export class EdgeWatcher {
  private readonly last = new Map<string, Sample>();

  /** `sidecars`: per workload, how to read its sidecar's metrics (Prometheus text). */
  constructor(private readonly sidecars: ReadonlyMap<string, () => Promise<string>>) {}

  async edges(): Promise<EdgeStats[]> {
    const out: EdgeStats[] = [];
    for (const [source, metricsText] of this.sidecars) {
      const now = await sample(metricsText);
      const before = this.last.get(source);
      this.last.set(source, now);
      if (!before) continue;
      const seconds = (now.at - before.at) / 1000;
      for (const [destination, r] of now.requests) {
        const b = before.requests.get(destination);
        const total = r.total - (b?.total ?? 0);
        const ok = r.ok - (b?.ok ?? 0);
        out.push({
          source: destination === INBOUND ? '*' : source,
          destination: destination === INBOUND ? `${source} (as answered)` : destination,
          rps: total / seconds,
          successRate: total > 0 ? ok / total : NaN,
          p50Ms: quantileMs(now.buckets.get(destination), before.buckets.get(destination), 0.5),
          p99Ms: quantileMs(now.buckets.get(destination), before.buckets.get(destination), 0.99),
          mtls: r.mtls,
          destinationIdentities: [...r.identities].sort(),
        });
      }
    }
    return out;
  }
}

export function formatEdges(edges: readonly EdgeStats[]): string {
  const rows = edges.map((e) => [
    `${e.source} -> ${e.destination}`,
    e.rps.toFixed(1),
    Number.isNaN(e.successRate) ? '-' : `${(e.successRate * 100).toFixed(2)}%`,
    Number.isNaN(e.p50Ms) ? '-' : `${e.p50Ms}ms`,
    Number.isNaN(e.p99Ms) ? '-' : `${e.p99Ms}ms`,
    e.mtls ? `mTLS ${e.destinationIdentities.map((i) => i.replace(/^spiffe:\/\/[^/]+\/ns\/[^/]+\/sa\//, 'sa/')).join(', ')}` : 'plain',
  ]);
  const head = ['EDGE', 'RPS', 'SUCCESS', 'P50<=', 'P99<=', 'SECURITY'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}
