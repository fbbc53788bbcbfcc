// The demo's console table, from the control plane's mesh view (the numbers
// the dashboard and `tsmesh stat` show; control/observe computes them): the
// calls between workloads as each caller's sidecar saw them, then what each
// app answered itself (its sidecar's inbound side, before its callers' retries).
import { alignColumns, millis, percent } from '../control/observe/stat.js';
import type { GoldenSignals } from '../control/observe/golden.js';
import type { MeshView } from '../control/observe/view.js';

const shortIdentity = (id: string): string => id.replace(/^spiffe:\/\/[^/]+\/ns\/[^/]+\/sa\//, 'sa/');

const golden = (g: GoldenSignals): string[] => [g.rps.toFixed(1), percent(g.successRate), millis(g.p50Ms), millis(g.p95Ms), millis(g.p99Ms)];

export function formatDemoTable(view: MeshView): string {
  const calls = view.edges.map((e) => [
    `${e.source} -> ${e.destination}`,
    ...golden(e),
    e.mtls ? `mTLS ${e.destinationIdentities.map(shortIdentity).join(', ')}` : 'plain',
  ]);
  // A workload nobody called in the window (the traffic generator) answered nothing.
  const answered = view.workloads.filter((w) => w.requests > 0).map((w) => [`* -> ${w.name} (as answered)`, ...golden(w), '']);
  return alignColumns([['EDGE', 'RPS', 'SUCCESS', 'P50', 'P95', 'P99', 'SECURITY'], ...calls, ...answered]);
}
