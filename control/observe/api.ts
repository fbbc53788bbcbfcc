// The dashboard's JSON beside /api/v1/mesh: the last 15 minutes
// (/api/v1/history) and the policies in force on a workload
// (/api/v1/policies). The admin server asks `answer` first for every GET.
import type { MeshModel } from '../model.js';
import type { MeshObserver } from './observer.js';
import { workloadPolicies } from './policies.js';

export const HISTORY_PATH = '/api/v1/history';
export const POLICIES_PATH = '/api/v1/policies';

export interface ApiAnswer {
  status: number;
  body: unknown;
}

export interface DashboardApiOptions {
  observer: MeshObserver;
  /** The control plane's model now; undefined before its source synced or without one. */
  model: () => MeshModel | undefined;
}

const WORKLOAD = /^[^/\s]+\/[^/\s]+$/;

/** The answer for `path`, or undefined when it is not the dashboard API's. */
export function dashboardApi(opts: DashboardApiOptions): (path: string, query: URLSearchParams) => ApiAnswer | undefined {
  return (path, query) => {
    const workload = query.get('workload') ?? undefined;
    if ((path === HISTORY_PATH || path === POLICIES_PATH) && workload !== undefined && !WORKLOAD.test(workload)) {
      return { status: 400, body: { error: `workload must be namespace/name (as the mesh view names it: demo/web), got ${JSON.stringify(workload)}` } };
    }
    if (path === HISTORY_PATH) return { status: 200, body: opts.observer.historyView(workload) };
    if (path === POLICIES_PATH) {
      if (workload === undefined) return { status: 400, body: { error: 'which workload? pass ?workload=namespace/name' } };
      const [ns, name] = workload.split('/') as [string, string];
      const calls = opts.observer
        .view()
        .edges.filter((e) => e.sourceNamespace === ns && e.source === name)
        .map((e) => e.destination);
      const policies = workloadPolicies(opts.model(), workload, calls);
      return 'error' in policies ? { status: 503, body: policies } : { status: 200, body: policies };
    }
    return undefined;
  };
}
