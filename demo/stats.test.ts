import assert from 'node:assert/strict';
import type { MeshView } from '../control/observe/view.js';
import { formatDemoTable } from './stats.js';

const id = (sa: string): string => `spiffe://cluster.local/ns/demo/sa/${sa}`;
/** What the console table does not show of an edge. */
const edgeExtras = {
  mtlsShare: null,
  split: [],
  backend: { requests: 0, rps: 0, successRate: null },
  resilience: { retries: 0, retryBudgetExhausted: 0, ejections: 0, endpointsEjected: 0, overloadRejections: 0, faultsInjected: 0 },
};
const signals = (rps: number, successRate: number | null, p50Ms: number | null, p95Ms: number | null, p99Ms: number | null) => ({ requests: rps * 10, rps, successRate, p50Ms, p95Ms, p99Ms });

describe('the demo console table', () => {
  it("shows the control plane's edges, then what each called app answered; a workload nobody called has no row", () => {
    const view: MeshView = {
      generatedAt: '2025-01-01T00:00:00.000Z',
      windowSeconds: 10,
      edges: [
        { source: 'loadgen', sourceNamespace: 'demo', destination: 'web.demo', ...signals(20, 1, 2.5, 4.75, 9.9), mtls: true, sourceIdentities: [id('loadgen')], destinationIdentities: [id('web')], ...edgeExtras },
        { source: 'web', sourceNamespace: 'demo', destination: 'api.demo', ...signals(20, 0.995, 12.4, 40, 88), mtls: true, sourceIdentities: [id('web')], destinationIdentities: [id('api'), id('api-v2')], ...edgeExtras },
        { source: 'legacy', sourceNamespace: 'demo', destination: 'ratings.demo', ...signals(0, null, null, null, null), mtls: false, sourceIdentities: [], destinationIdentities: [], ...edgeExtras },
      ],
      workloads: [
        { name: 'loadgen', namespace: 'demo', meshedPods: 1, pods: 1, services: [], ...signals(0, null, null, null, null) },
        { name: 'web', namespace: 'demo', meshedPods: 1, pods: 1, services: ['web.demo'], ...signals(20, 1, 1.2, 2, 3) },
      ],
      proxies: [],
    };
    assert.equal(
      formatDemoTable(view),
      [
        'EDGE                    RPS   SUCCESS  P50    P95    P99    SECURITY',
        'loadgen -> web.demo     20.0  100.00%  2.5ms  4.8ms  9.9ms  mTLS sa/web',
        'web -> api.demo         20.0  99.50%   12ms   40ms   88ms   mTLS sa/api, sa/api-v2',
        'legacy -> ratings.demo  0.0   -        -      -      -      plain',
        '* -> web (as answered)  20.0  100.00%  1.2ms  2.0ms  3.0ms',
      ].join('\n'),
    );
  });
});
