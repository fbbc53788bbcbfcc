// Inbound authorization. While no AuthorizationPolicy selects this workload,
// every caller the mesh authenticated is allowed. Once one does, a caller is
// allowed only when some rule of some policy matches it (Istio's ALLOW
// semantics): within a rule every list that is set must match (SPIFFE ID,
// namespace, "namespace/serviceaccount", port); a rule with no list matches
// every mesh caller; a port no rule covers is closed. Namespaces and service
// accounts name workloads of this mesh's trust domain only: a caller of
// another trust domain matches them by its whole SPIFFE ID or not at all.
// Callers without a mesh identity (plain text in PERMISSIVE mode) match no
// rule.
//
// HTTP requests that are denied get 403 with `x-tsmesh-error: denied` and
// the reason; L4 connections are closed (inbound/listener.ts).
import type { AuthorizationPolicySpec } from '../../contract/proxy-config.js';
import { localResponse, type Layer } from '../http/types.js';

export interface Authorizer {
  /** False while no policy selects this workload. */
  readonly enforced: boolean;
  /** Why `peer` may not call `port`, or undefined when it may. */
  denial(peer: string, port: number): string | undefined;
}

interface CompiledRule {
  identities: ReadonlySet<string> | undefined;
  namespaces: ReadonlySet<string> | undefined;
  serviceAccounts: ReadonlySet<string> | undefined;
  ports: ReadonlySet<number> | undefined;
}

const WORKLOAD_ID = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;
const set = <T>(xs: readonly T[] | undefined): ReadonlySet<T> | undefined => (xs ? new Set(xs) : undefined);

export const ALLOW_ALL: Authorizer = { enforced: false, denial: () => undefined };

/** `trustDomain`: this workload's, whose callers namespace and service-account rules name. */
export function compileAuthorization(policies: readonly AuthorizationPolicySpec[] | undefined, trustDomain: string): Authorizer {
  if (!policies || policies.length === 0) return ALLOW_ALL;
  const rules: CompiledRule[] = policies.flatMap((p) =>
    p.rules.map((r) => ({ identities: set(r.identities), namespaces: set(r.namespaces), serviceAccounts: set(r.serviceAccounts), ports: set(r.ports) })),
  );
  const names = policies.map((p) => p.name).join(', ');
  return {
    enforced: true,
    denial(peer, port) {
      if (!peer) return `callers without a mesh identity may not call port ${port} while authorization policies (${names}) select this workload`;
      const m = WORKLOAD_ID.exec(peer);
      const local = m !== null && m[1] === trustDomain;
      const namespace = local ? m[2] : undefined;
      const account = local ? `${m[2]}/${m[3]}` : undefined;
      for (const r of rules) {
        if (r.ports && !r.ports.has(port)) continue;
        if (r.identities && !r.identities.has(peer)) continue;
        if (r.namespaces && (namespace === undefined || !r.namespaces.has(namespace))) continue;
        if (r.serviceAccounts && (account === undefined || !r.serviceAccounts.has(account))) continue;
        return undefined;
      }
      return `${peer} may not call port ${port}: no rule of the authorization policies (${names}) allows it`;
    },
  };
}

export interface AuthzOptions {
  /** The authorizer of the config in force. */
  authorizer: () => Authorizer;
  /** The caller's SPIFFE ID and the port it called: fixed for a connection. */
  peer: string;
  port: number;
  /** Counts a denial. */
  denied(): void;
}

/** Per connection: the decision is made once per config, not per request. */
export function authzLayer(o: AuthzOptions): Layer {
  return (next) => {
    let seen: Authorizer | undefined;
    let denial: string | undefined;
    return (req) => {
      const a = o.authorizer();
      if (a !== seen) {
        seen = a;
        denial = a.denial(o.peer, o.port);
      }
      if (denial === undefined) return next(req);
      o.denied();
      return Promise.resolve(localResponse(403, 'denied', `tsmesh: ${denial}`));
    };
  };
}
