// The mesh as the control plane sees it, whatever the source (Kubernetes
// informers or a local YAML file). Sources produce a MeshModel; snapshot.ts
// turns it into each proxy's ProxyConfig.
import type { ScopedSettings } from '../contract/annotations.js';
import type { AuthorizationAction, AuthorizationRule, MeshSettings, PortProtocol, Route, TrafficPolicySpec } from '../contract/proxy-config.js';

export interface MeshModel {
  mesh: MeshSettings;
  services: ServiceModel[];
  trafficPolicies: TrafficPolicyModel[];
  authorizationPolicies: AuthorizationPolicyModel[];
  /** What namespaces set over the mesh's settings (their annotations, contract/annotations.ts), by namespace; absent: none. */
  namespaceSettings?: NamespaceSettingsModel[];
  /** What workloads (a ServiceAccount's pods) set over their namespace's, by namespace and ServiceAccount. */
  workloadSettings?: WorkloadSettingsModel[];
  /** Gateway API routes (HTTPRoute, GRPCRoute) attached to Services; absent: none. */
  gatewayRoutes?: GatewayRouteModel[];
}

/** An HTTPRoute or GRPCRoute whose parentRefs name Services, as the proxies apply it. */
export interface GatewayRouteModel {
  kind: 'HTTPRoute' | 'GRPCRoute';
  namespace: string;
  name: string;
  /** Creation time: of two routes of equal precedence, the older wins. */
  createdAt?: string;
  /** The Services (and ports) it attached to; a route in the Service's namespace is its producer's, elsewhere a consumer's. */
  parents: GatewayRouteParent[];
  /** One per (rule, match) pair, in rule then match order. */
  entries: GatewayRouteEntry[];
}

export interface GatewayRouteParent {
  service: string;
  namespace: string;
  /** Absent: every port of the Service. */
  port?: number;
}

export interface GatewayRouteEntry {
  route: Route;
  /**
   * Precedence within its kind, compared element by element, higher first.
   * HTTPRoute: an exact path, then a regex, then a prefix (each by length),
   * a method, the number of header then of query matches. GRPCRoute: exact
   * before regex, characters of service, of method, header matches.
   */
  rank: number[];
  rule: number;
  match: number;
}

export interface NamespaceSettingsModel {
  namespace: string;
  settings: ScopedSettings;
}

export interface WorkloadSettingsModel {
  namespace: string;
  serviceAccount: string;
  settings: ScopedSettings;
}

export interface ServiceModel {
  name: string;
  namespace: string;
  /** None for a headless Service: callers reach its endpoints by their own addresses. */
  clusterIPs: string[];
  /** None for a headless Service without TCP ports (kept for its endpoints' identities). */
  ports: { port: number; name?: string; protocol: PortProtocol; targetPort: number }[];
  endpoints: EndpointModel[];
}

export interface EndpointModel {
  address: string;
  /** SPIFFE ID of the endpoint's sidecar; absent when the pod is not meshed. */
  identity?: string;
  /** Per service port name, when the pod's port differs from the service's targetPort. */
  ports?: Record<string, number>;
  ready: boolean;
  /** Ports a meshed endpoint's sidecar does not capture ("25", "8000-8100"), reached in plain TCP. */
  skipInboundPorts?: string[];
}

/** A TrafficPolicy: `spec` applies to the Service `targetService` in `namespace`. */
export interface TrafficPolicyModel {
  name: string;
  namespace: string;
  targetService: string;
  spec: TrafficPolicySpec;
  /** Creation time, to settle which of two policies for one service wins (the older). */
  createdAt?: string;
}

/** An AuthorizationPolicy: selects workloads by Service or by ServiceAccount in its namespace. */
export interface AuthorizationPolicyModel {
  name: string;
  namespace: string;
  target: { kind: 'Service' | 'ServiceAccount'; name: string };
  /** Absent: ALLOW. */
  action?: AuthorizationAction;
  rules: AuthorizationRule[];
}

/** What a connected proxy is: the workload its certificate names. */
export interface ProxyIdentity {
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
}
