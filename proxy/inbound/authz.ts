// Inbound authorization: who may call this workload, and what.
//
// A call is one opaque TCP connection, or one HTTP request. It is judged as
// Istio judges it:
//   1. DENY policies: a call one of their rules matches is denied.
//   2. ALLOW policies: once one selects this workload, a call must match one
//      of their rules, or it is denied; a port no rule covers is closed.
//   3. Otherwise the default inbound policy: all-authenticated (callers with
//      a mesh identity), all-unauthenticated (every caller) or deny. Unset,
//      it is all-authenticated, or all-unauthenticated on a port whose mTLS
//      mode is PERMISSIVE (which has always let plaintext callers through).
//   4. AUDIT policies deny nothing: a call allowed above that one of their
//      rules matches is logged and counted as one they would deny.
// Within a rule every field that is set must match, a field when any of its
// values does. identities match whole SPIFFE IDs; namespaces and
// serviceAccounts name workloads of this mesh's trust domain only, so a
// caller of another trust domain matches them by its whole SPIFFE ID or not
// at all; a caller without a mesh identity (plain text in PERMISSIVE mode)
// matches none of the three, though it matches a rule that names none.
// methods, paths, pathPrefixes and headers look at an HTTP request: a rule
// with any of them never matches an opaque TCP connection, whatever its
// action (a DENY rule about paths does not close TCP ports).
//
// Cheap per call: the rules are sorted per port, then per caller, once per
// config (connection()); a caller whose rules do not look at requests gets
// one verdict for its whole connection. Paths are matched on one spelling
// (lib/url-path.ts).
//
// Denied HTTP requests get 403 with `x-tsmesh-error: denied`, the deciding
// policy in `x-tsmesh-policy` and the reason in the body (gRPC callers get
// PERMISSION_DENIED with it, http/grpc-answers.ts); L4 connections are
// closed (inbound/listener.ts).
import type { AuthorizationPolicySpec, AuthorizationRule, DefaultInboundPolicy, MtlsMode, ProxyConfig } from '../../contract/proxy-config.js';
import { POLICY_HEADER } from '../../contract/vocabulary.js';
import { hasPathPrefix, normalizePath, prefixOf } from '../../lib/url-path.js';
import { localResponse, type Layer, type ProxyRequest } from '../http/types.js';

/** What decided a call: a policy and its rule, or the default inbound policy. */
export interface Finding {
  readonly kind: 'deny' | 'audit';
  /** The policy's name; the ALLOW policies' names when none of their rules matched; `default:<policy>`. */
  readonly policy: string;
  /** The rule's index in its policy ("" when no rule decided). */
  readonly rule: string;
  /** Why, for the caller to read. */
  readonly reason: string;
}

/** The verdicts for one caller on one port under one config. */
export interface ConnectionAuthz {
  /** An opaque TCP connection: denied, audited, or undefined (allowed). */
  readonly tcp: Finding | undefined;
  /** One HTTP request on the connection: denied, audited, or undefined (allowed). */
  request(req: ProxyRequest): Finding | undefined;
}

export interface Authorizer {
  /** The verdicts for `peer` ("" without a mesh identity) on `port`; made once per caller and port. */
  connection(peer: string, port: number): ConnectionAuthz;
}

/** What a rule asks of a request; every field set must match. */
interface RequestMatch {
  methods: ReadonlySet<string> | undefined;
  paths: ReadonlySet<string> | undefined;
  /** Normalized, without a trailing slash ("" for "/"). */
  prefixes: readonly string[] | undefined;
  headers: readonly (readonly [name: string, value: string])[] | undefined;
}

interface CompiledRule {
  policy: string;
  index: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  identities: ReadonlySet<string> | undefined;
  namespaces: ReadonlySet<string> | undefined;
  serviceAccounts: ReadonlySet<string> | undefined;
  ports: ReadonlySet<number> | undefined;
  /** undefined: the rule does not look at requests. */
  request: RequestMatch | undefined;
  /** Whether `request` reads the normalized path. */
  readsPath: boolean;
}

const WORKLOAD_ID = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;
const set = <T>(xs: readonly T[] | undefined): ReadonlySet<T> | undefined => (xs ? new Set(xs) : undefined);

/** The mTLS mode of `port`: the workload's for that port, else the workload's, else the mesh's. */
export function inboundMtlsMode(config: Pick<ProxyConfig, 'mesh' | 'inbound'>, port: number): MtlsMode {
  return config.inbound.portMtlsModes?.[port] ?? config.inbound.mtlsMode ?? config.mesh.mtlsMode;
}

/** The default inbound policy on `port`, resolved as the header of this file says. */
export function defaultInboundPolicy(config: Pick<ProxyConfig, 'mesh' | 'inbound'>, port: number): DefaultInboundPolicy {
  return config.inbound.defaultPolicy ?? config.mesh.defaultInboundPolicy ?? (inboundMtlsMode(config, port) === 'PERMISSIVE' ? 'all-unauthenticated' : 'all-authenticated');
}

function requestMatch(r: AuthorizationRule): RequestMatch | undefined {
  const headers = Object.entries(r.headers ?? {});
  if (!r.methods && !r.paths && !r.pathPrefixes && headers.length === 0) return undefined;
  const pathField = r.paths !== undefined || r.pathPrefixes !== undefined;
  return {
    methods: set(r.methods),
    paths: pathField ? new Set(r.paths ?? []) : undefined,
    prefixes: pathField ? (r.pathPrefixes ?? []).map(prefixOf) : undefined,
    headers: headers.length > 0 ? headers : undefined,
  };
}

/** Whether `req` (its normalized path `path`) matches `m`: loops, no closures, a request costs little per rule. */
function matchesRequest(m: RequestMatch, req: ProxyRequest, path: string): boolean {
  if (m.methods && !m.methods.has(req.method)) return false;
  if (m.prefixes) {
    let hit = m.paths!.has(path);
    for (let i = 0; !hit && i < m.prefixes.length; i++) hit = hasPathPrefix(path, m.prefixes[i]!);
    if (!hit) return false;
  }
  if (m.headers) {
    for (const [name, value] of m.headers) {
      const got = req.headers[name];
      if (typeof got === 'string' ? got !== value : got === undefined || !got.includes(value)) return false;
    }
  }
  return true;
}

function compileRule(p: AuthorizationPolicySpec, r: AuthorizationRule, i: number): CompiledRule {
  return {
    policy: p.name,
    index: String(i),
    action: p.action ?? 'ALLOW',
    identities: set(r.identities),
    namespaces: set(r.namespaces),
    serviceAccounts: set(r.serviceAccounts),
    ports: set(r.ports),
    request: requestMatch(r),
    readsPath: r.paths !== undefined || r.pathPrefixes !== undefined,
  };
}

const who = (peer: string): string => peer || 'a caller without a mesh identity';
const ALLOWED: ConnectionAuthz = { tcp: undefined, request: () => undefined };

/**
 * Compiles the authorization of `config` (its policies and default inbound
 * policy). `trustDomain`: this workload's, whose callers namespace and
 * service-account rules name.
 */
export function compileAuthorization(config: Pick<ProxyConfig, 'mesh' | 'inbound'>, trustDomain: string): Authorizer {
  const policies = config.inbound.authorization ?? [];
  const rules = policies.flatMap((p) => p.rules.map((r, i) => compileRule(p, r, i)));
  const allowPolicies = policies.filter((p) => (p.action ?? 'ALLOW') === 'ALLOW').map((p) => p.name);
  const allowNames = allowPolicies.join(',');
  const byPort = new Map<number, CompiledRule[]>();
  const connections = new Map<string, ConnectionAuthz>();

  const fromMatches = (r: CompiledRule, peer: string, namespace: string | undefined, account: string | undefined): boolean =>
    (!r.identities || r.identities.has(peer)) &&
    (!r.namespaces || (namespace !== undefined && r.namespaces.has(namespace))) &&
    (!r.serviceAccounts || (account !== undefined && r.serviceAccounts.has(account)));

  const build = (peer: string, port: number): ConnectionAuthz => {
    let portRules = byPort.get(port);
    if (!portRules) byPort.set(port, (portRules = rules.filter((r) => !r.ports || r.ports.has(port))));
    const m = peer ? WORKLOAD_ID.exec(peer) : null;
    const local = m !== null && m[1] === trustDomain;
    const namespace = local ? m[2] : undefined;
    const account = local ? `${m[2]}/${m[3]}` : undefined;
    // A caller without a mesh identity matches no ALLOW rule: only the default policy lets it in.
    const mine = portRules.filter((r) => fromMatches(r, peer, namespace, account) && (peer !== '' || r.action !== 'ALLOW'));
    const byDefault = defaultInboundPolicy(config, port);
    if (mine.length === 0 && allowPolicies.length === 0 && (byDefault === 'all-unauthenticated' || (byDefault === 'all-authenticated' && peer !== ''))) return ALLOWED;

    const finding = (kind: Finding['kind'], r: CompiledRule, what: string): Finding => ({
      kind,
      policy: r.policy,
      rule: r.index,
      reason: `${who(peer)} may not call ${what}: rule ${r.index} of ${kind === 'deny' ? 'DENY' : 'AUDIT'} authorization policy ${r.policy} denies it`,
    });
    const portText = `port ${port}`;
    const l4 = (action: CompiledRule['action']): CompiledRule | undefined => mine.find((r) => r.action === action && !r.request);
    const l7 = (action: CompiledRule['action']): CompiledRule[] => mine.filter((r) => r.action === action && r.request);
    const denyL4 = l4('DENY');
    const denyL7 = l7('DENY');
    const auditL4 = l4('AUDIT');
    const auditL7 = l7('AUDIT');
    const allowL7 = l7('ALLOW');

    // Whether the caller passes step 2 or 3 without looking at a request.
    let fallback: Finding | undefined;
    if (allowPolicies.length > 0) {
      if (!l4('ALLOW'))
        fallback = { kind: 'deny', policy: allowNames, rule: '', reason: `${who(peer)} may not call ${portText}: no rule of the authorization policies (${allowPolicies.join(', ')}) allows it` };
    } else {
      const d = byDefault;
      if (d === 'deny') fallback = { kind: 'deny', policy: 'default:deny', rule: '', reason: `${who(peer)} may not call ${portText}: the default inbound policy of this workload is deny, and no ALLOW authorization policy selects it` };
      else if (d === 'all-authenticated' && !peer)
        fallback = { kind: 'deny', policy: 'default:all-authenticated', rule: '', reason: `${who(peer)} may not call ${portText}: the default inbound policy of this workload is all-authenticated` };
    }
    const tcpAudit = auditL4 ? finding('audit', auditL4, portText) : undefined;
    const tcp = denyL4 ? finding('deny', denyL4, portText) : (fallback ?? tcpAudit);
    if (denyL4) return { tcp, request: () => tcp };
    // With no rule looking at requests, every request gets the verdict of the connection.
    const allowOnRequest = fallback !== undefined && allowL7.length > 0;
    if (denyL7.length === 0 && auditL7.length === 0 && !allowOnRequest) return { tcp, request: () => tcp };

    const readsPath = [...denyL7, ...auditL7, ...(allowOnRequest ? allowL7 : [])].some((r) => r.readsPath);
    const what = (req: ProxyRequest): string => `${req.method} ${req.path.split('?')[0]} on ${portText}`;
    return {
      tcp,
      request(req) {
        const path = readsPath ? normalizePath(req.path) : '';
        for (const r of denyL7) if (matchesRequest(r.request!, req, path)) return finding('deny', r, what(req));
        if (fallback) {
          let allowed = false;
          if (allowOnRequest) for (let i = 0; !allowed && i < allowL7.length; i++) allowed = matchesRequest(allowL7[i]!.request!, req, path);
          if (!allowed) return fallback;
        }
        if (tcpAudit) return tcpAudit;
        for (const r of auditL7) if (matchesRequest(r.request!, req, path)) return finding('audit', r, what(req));
        return undefined;
      },
    };
  };

  return {
    connection(peer, port) {
      const key = `${port} ${peer}`;
      let c = connections.get(key);
      if (!c) connections.set(key, (c = build(peer, port)));
      return c;
    },
  };
}

/** Before any config: nothing is denied (plain text is refused before it is asked, the mTLS mode being STRICT). */
export const ALLOW_ALL: Authorizer = { connection: () => ALLOWED };

export interface AuthzOptions {
  /** The authorizer of the config in force. */
  authorizer: () => Authorizer;
  /** The caller's SPIFFE ID ("" without one) and the port it called: fixed for a connection. */
  peer: string;
  port: number;
  /** Counts (and logs) a denial or an audit. */
  found(f: Finding): void;
}

/** Per connection: the verdicts are taken once per config, and a request looked at only where a rule asks. */
export function authzLayer(o: AuthzOptions): Layer {
  return (next) => {
    let seen: Authorizer | undefined;
    let verdicts: ConnectionAuthz = ALLOWED;
    return (req) => {
      const a = o.authorizer();
      if (a !== seen) {
        seen = a;
        verdicts = a.connection(o.peer, o.port);
      }
      const f = verdicts.request(req);
      if (f === undefined) return next(req);
      o.found(f);
      if (f.kind === 'audit') return next(req);
      const res = localResponse(403, 'denied', `tsmesh: ${f.reason}`);
      res.headers[POLICY_HEADER] = f.policy;
      return Promise.resolve(res);
    };
  };
}
