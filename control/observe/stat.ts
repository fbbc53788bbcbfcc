// `tsmesh stat`'s side of the dashboard: read the control plane's mesh view
// over its admin port and print golden metrics per workload, as
// `linkerd viz stat` does.
import { MESH_VIEW_PATH } from '../admin.js';
import { fetchAdminJson } from '../admin-client.js';
import type { MeshView, WorkloadView } from './view.js';

/** The control plane could not give a mesh view; the message says what was tried and what to do. */
export class MeshViewUnavailable extends Error {
  override name = 'MeshViewUnavailable';
}

export async function fetchMeshView(adminAddress: string, timeoutMs = 5000): Promise<MeshView> {
  const notServed = `the control plane at ${adminAddress} serves no mesh view (${MESH_VIEW_PATH}: 404): it was started without proxies to scrape (tsmesh control-plane with --mesh-file), or it is not a tsmesh control plane`;
  try {
    return await fetchAdminJson<MeshView>(adminAddress, MESH_VIEW_PATH, notServed, timeoutMs);
  } catch (e) {
    throw new MeshViewUnavailable((e as Error).message, { cause: e });
  }
}

/**
 * The view once it has rates: a control plane that just started (or, in a
 * cluster, that nobody was reading) has scraped each proxy once at most.
 */
export async function fetchMeshViewWithRates(adminAddress: string, waitMs = 8000): Promise<MeshView> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const view = await fetchMeshView(adminAddress);
    if (view.windowSeconds > 0 || view.proxies.length === 0 || Date.now() > deadline) return view;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export const percent = (v: number | null): string => (v === null ? '-' : `${(v * 100).toFixed(2)}%`);
export const millis = (v: number | null): string => (v === null ? '-' : v < 10 ? `${v.toFixed(1)}ms` : `${Math.round(v)}ms`);

/** Rows of cells as text columns, two spaces apart, each as wide as its widest cell. */
export function alignColumns(table: readonly (readonly string[])[]): string {
  const widths = (table[0] ?? []).map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The table of golden metrics per workload; with `namespace`, only that namespace's and no NAMESPACE column. */
export function formatStatTable(view: MeshView, namespace?: string): string {
  const rows: WorkloadView[] = view.workloads.filter((w) => namespace === undefined || w.namespace === namespace);
  const head = ['NAME', 'MESHED', 'SUCCESS', 'RPS', 'LATENCY_P50', 'LATENCY_P95', 'LATENCY_P99'];
  const cells = rows.map((w) => [
    w.name,
    `${w.meshedPods}/${w.pods}`,
    percent(w.successRate),
    `${w.rps.toFixed(1)}rps`,
    millis(w.p50Ms),
    millis(w.p95Ms),
    millis(w.p99Ms),
  ]);
  return alignColumns(namespace === undefined ? [['NAMESPACE', ...head], ...cells.map((c, i) => [rows[i]!.namespace, ...c])] : [head, ...cells]);
}
