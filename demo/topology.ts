// The demo mesh: who calls whom, which policies apply. Pure data and the
// mesh file the control plane reads.
//
//   loadgen --> web --> api (v1, 90%) --+--> ratings (fails 20% of requests)
//                       api-v2 (10%) ---+
//
// api splits 10% to the canary api-v2; calls to ratings are retried inside a
// budget and guarded by a circuit breaker; only api and api-v2 may call ratings.

export interface DemoWorkload {
  /** Also its ServiceAccount and, but for api-v2, its Service. */
  name: string;
  service: string | undefined;
  /** Services it calls. */
  calls: string[];
}

export const NAMESPACE = 'demo';

export const WORKLOADS: readonly DemoWorkload[] = [
  { name: 'loadgen', service: undefined, calls: ['web'] },
  { name: 'web', service: 'web', calls: ['api'] },
  { name: 'api', service: 'api', calls: ['ratings'] },
  { name: 'api-v2', service: 'api-v2', calls: ['ratings'] },
  { name: 'ratings', service: 'ratings', calls: [] },
];

export const RATINGS_FAILURE_SHARE = 0.2;

/** A virtual ClusterIP per service; in loopback mode it is never dialled. */
export const CLUSTER_IPS: Readonly<Record<string, string>> = {
  web: '10.96.10.10',
  api: '10.96.10.20',
  'api-v2': '10.96.10.21',
  ratings: '10.96.10.30',
};
export const SERVICE_PORT = 80;

/** Where each workload's sidecar takes inbound mesh traffic (its endpoint address and port). */
export type EndpointAddresses = Readonly<Record<string, { address: string; port: number }>>;

export function meshFile(endpoints: EndpointAddresses): string {
  const services = WORKLOADS.filter((w) => w.service).map((w) => {
    const ep = endpoints[w.name]!;
    return `  - name: ${w.service}
    namespace: ${NAMESPACE}
    clusterIPs: [${CLUSTER_IPS[w.service!]}]
    ports: [{ port: ${SERVICE_PORT}, name: http, protocol: http, targetPort: ${ep.port} }]
    endpoints: [{ address: ${ep.address}, serviceAccount: ${w.name} }]`;
  });
  return `apiVersion: tsmesh.io/v1alpha1
kind: Mesh
mesh: { trustDomain: cluster.local, mtlsMode: STRICT }
services:
${services.join('\n')}
trafficPolicies:
  - name: api-canary
    namespace: ${NAMESPACE}
    targetRef: { kind: Service, name: api }
    spec:
      routes:
        - backends: [{ service: api, weight: 90 }, { service: api-v2, weight: 10 }]
  - name: ratings-resilience
    namespace: ${NAMESPACE}
    targetRef: { kind: Service, name: ratings }
    spec:
      timeout: 2s
      retries: { attempts: 4, retryOn: [5xx], backoff: { base: 5ms, max: 50ms }, budget: { ratio: 0.5, minRetriesPerSecond: 10, ttl: 10s } }
      circuitBreaker: { consecutiveFailures: 20, ejectionTime: 10s }
authorizationPolicies:
  - name: ratings-callers
    namespace: ${NAMESPACE}
    targetRef: { kind: Service, name: ratings }
    rules: [{ serviceAccounts: [${NAMESPACE}/api, ${NAMESPACE}/api-v2] }]
`;
}
