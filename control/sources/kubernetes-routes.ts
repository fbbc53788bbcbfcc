// Gateway API routes (HTTPRoute, GRPCRoute of gateway.networking.k8s.io/v1,
// the mesh profile) -> route models, and a verdict on each parentRef of each
// route (its Accepted and ResolvedRefs conditions, which route-status.ts
// writes). Pure; kubernetes-model.ts calls it.
//
// A route attaches to a Service through a parentRef of group "" and kind
// Service (other parentRefs, a Gateway's, belong to other controllers and are
// left alone), to one port of it or, without a port, to every port. Each
// (rule, match) pair becomes one contract Route with a precedence rank;
// control/snapshot.ts picks the routes that apply to a caller (producer or
// consumer routes) and sorts them. A route that cannot be applied (a regex
// that does not compile, a filter the proxy does not have) is refused with
// Accepted=False and keeps its last accepted model, as policies do.
//
// Backends: a backendRef of kind Service (group ""), in any namespace: a mesh
// route reaches only what its callers reach without it, so no ReferenceGrant
// is asked for (GEP-1294). A backendRef to a Service that does not exist, or
// of another kind, keeps its weight under a name no proxy can resolve, so its
// share of requests gets 500, as the spec asks; ResolvedRefs says why.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { ValidationError } from '../../lib/schema.js';
import { parseTrafficPolicy } from '../../contract/validate.js';
import type { HeaderModifier, MirrorFilter, PathModifier, RedirectFilter, RetryPolicy, Route, RouteFilters, RouteMatch, WeightedBackend } from '../../contract/proxy-config.js';
import type { Condition } from './kubernetes-policies.js';
import type { GatewayRouteEntry, GatewayRouteModel, GatewayRouteParent, ServiceModel } from '../model.js';
import { olderFirst } from '../snapshot.js';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';

/** An HTTPRoute or GRPCRoute as the API returns it (spec unchecked). */
export interface RouteObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: unknown;
  status?: RouteStatus;
}

export interface ParentReference {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

/** metav1.Condition, as policies carry it. */
export type RouteCondition = Condition;

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions?: RouteCondition[];
}

export interface RouteStatus {
  parents?: RouteParentStatus[];
}

/** One condition as the control plane concluded it. */
export interface ConditionVerdict {
  status: boolean;
  reason: string;
  message: string;
}

/** What the control plane concluded about one route: per Service parentRef, Accepted and ResolvedRefs. */
export interface RouteVerdict {
  kind: RouteKind;
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  parents: { parentRef: ParentReference; accepted: ConditionVerdict; resolvedRefs: ConditionVerdict }[];
}

/** The last model of a route object that was accepted, by uid: what stays in force while a later one cannot be applied. */
export type AcceptedRoutes = Map<string, { generation: number; model: GatewayRouteModel }>;

export interface RoutesResult {
  routes: GatewayRouteModel[];
  verdicts: RouteVerdict[];
  accepted: AcceptedRoutes;
}

/** A name no proxy resolves: a backend that did not resolve keeps its share of requests, which get 500. */
const unresolved = (why: string, name: string, namespace: string): string => `${why}:${name}.${namespace}`;

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** The parentRefs that name a Service (group "" or absent is core only when kind is Service). */
export function serviceParentRefs(spec: Json): ParentReference[] {
  return arr(spec['parentRefs'])
    .map(obj)
    .filter((p) => (p['group'] ?? 'gateway.networking.k8s.io') === '' && p['kind'] === 'Service' && typeof p['name'] === 'string')
    .map((p) => ({
      group: '',
      kind: 'Service',
      name: p['name'] as string,
      ...(str(p['namespace']) !== undefined ? { namespace: p['namespace'] as string } : {}),
      ...(str(p['sectionName']) !== undefined ? { sectionName: p['sectionName'] as string } : {}),
      ...(num(p['port']) !== undefined ? { port: p['port'] as number } : {}),
    }));
}

function headerPairs(v: unknown, path: string): Record<string, string> | undefined {
  const list = arr(v);
  if (list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [i, h] of list.map(obj).entries()) {
    const name = str(h['name']);
    if (name === undefined) throw new ValidationError(`${path}[${i}].name`, 'a header name is required');
    // Names are case-insensitive; the first of two spellings counts, as the spec says.
    const key = name.toLowerCase();
    if (!(key in out)) out[key] = String(h['value'] ?? '');
  }
  return out;
}

function headerModifier(v: unknown, path: string): HeaderModifier {
  const m = obj(v);
  const set = headerPairs(m['set'], `${path}.set`);
  const add = headerPairs(m['add'], `${path}.add`);
  const remove = arr(m['remove']).map((r) => String(r).toLowerCase());
  return { ...(set ? { set } : {}), ...(add ? { add } : {}), ...(remove.length > 0 ? { remove } : {}) };
}

function pathModifier(v: unknown, path: string): PathModifier {
  const p = obj(v);
  if (p['type'] === 'ReplaceFullPath') return { replaceFullPath: String(p['replaceFullPath'] ?? '') };
  if (p['type'] === 'ReplacePrefixMatch') return { replacePrefixMatch: String(p['replacePrefixMatch'] ?? '') };
  throw new ValidationError(`${path}.type`, `${JSON.stringify(p['type'])} is not a path modifier (ReplaceFullPath or ReplacePrefixMatch)`);
}

/** A backend or mirror reference -> the service name the contract uses, and why it did not resolve, if so. */
interface ResolvedRef {
  service: string;
  port?: number;
  problem?: { reason: 'BackendNotFound' | 'InvalidKind'; message: string };
}

function resolveRef(ref: Json, routeNamespace: string, services: ReadonlyMap<string, ServiceModel>, path: string): ResolvedRef {
  const name = str(ref['name']) ?? '';
  const namespace = str(ref['namespace']) ?? routeNamespace;
  const group = str(ref['group']) ?? '';
  const kind = str(ref['kind']) ?? 'Service';
  const port = num(ref['port']);
  const portPart = port !== undefined ? { port } : {};
  if (group !== '' || kind !== 'Service')
    return { service: unresolved('invalid-kind', name, namespace), ...portPart, problem: { reason: 'InvalidKind', message: `${path}: ${group ? `${group}/` : ''}${kind} ${name} is not a Service; only Services are backends in the mesh` } };
  const svc = services.get(`${namespace}/${name}`);
  if (!svc) return { service: unresolved('not-found', name, namespace), ...portPart, problem: { reason: 'BackendNotFound', message: `${path}: Service ${namespace}/${name} does not exist` } };
  if (port === undefined) return { service: `${name}.${namespace}`, problem: { reason: 'BackendNotFound', message: `${path}: a backendRef to Service ${namespace}/${name} needs a port` } };
  if (!svc.ports.some((p) => p.port === port))
    return { service: unresolved('not-found', name, namespace), port, problem: { reason: 'BackendNotFound', message: `${path}: Service ${namespace}/${name} has no port ${port}` } };
  return { service: `${name}.${namespace}`, port };
}

interface Mapping {
  kind: RouteKind;
  namespace: string;
  services: ReadonlyMap<string, ServiceModel>;
  /** Why a reference did not resolve (the first of each reason is what ResolvedRefs says). */
  problems: NonNullable<ResolvedRef['problem']>[];
}

function mirror(v: unknown, path: string, m: Mapping): MirrorFilter {
  const f = obj(v);
  const ref = resolveRef(obj(f['backendRef']), m.namespace, m.services, `${path}.backendRef`);
  if (ref.problem) m.problems.push(ref.problem);
  let percent = num(f['percent']);
  const fraction = obj(f['fraction']);
  if (percent === undefined && num(fraction['numerator']) !== undefined) percent = (100 * (fraction['numerator'] as number)) / (num(fraction['denominator']) ?? 100);
  return { service: ref.service, ...(ref.port !== undefined ? { port: ref.port } : {}), ...(percent !== undefined ? { percent } : {}) };
}

function filters(v: unknown, path: string, m: Mapping): RouteFilters | undefined {
  const list = arr(v).map(obj);
  if (list.length === 0) return undefined;
  const out: RouteFilters = {};
  for (const [i, f] of list.entries()) {
    const at = `${path}[${i}]`;
    switch (f['type']) {
      case 'RequestHeaderModifier':
        out.requestHeaders = headerModifier(f['requestHeaderModifier'], `${at}.requestHeaderModifier`);
        break;
      case 'ResponseHeaderModifier':
        out.responseHeaders = headerModifier(f['responseHeaderModifier'], `${at}.responseHeaderModifier`);
        break;
      case 'RequestMirror':
        (out.mirrors ??= []).push(mirror(f['requestMirror'], `${at}.requestMirror`, m));
        break;
      case 'RequestRedirect': {
        if (m.kind === 'GRPCRoute') throw new ValidationError(`${at}.type`, 'GRPCRoute has no RequestRedirect filter');
        const r = obj(f['requestRedirect']);
        const redirect: RedirectFilter = {};
        const scheme = str(r['scheme']);
        if (scheme !== undefined) {
          if (scheme !== 'http' && scheme !== 'https') throw new ValidationError(`${at}.requestRedirect.scheme`, `${JSON.stringify(scheme)} is not http or https`);
          redirect.scheme = scheme;
        }
        if (str(r['hostname']) !== undefined) redirect.hostname = r['hostname'] as string;
        if (num(r['port']) !== undefined) redirect.port = r['port'] as number;
        if (r['path'] !== undefined) redirect.path = pathModifier(r['path'], `${at}.requestRedirect.path`);
        if (num(r['statusCode']) !== undefined) redirect.statusCode = r['statusCode'] as number;
        out.redirect = redirect;
        break;
      }
      case 'URLRewrite': {
        if (m.kind === 'GRPCRoute') throw new ValidationError(`${at}.type`, 'GRPCRoute has no URLRewrite filter');
        const r = obj(f['urlRewrite']);
        out.rewrite = { ...(str(r['hostname']) !== undefined ? { hostname: r['hostname'] as string } : {}), ...(r['path'] !== undefined ? { path: pathModifier(r['path'], `${at}.urlRewrite.path`) } : {}) };
        break;
      }
      default:
        throw new ValidationError(`${at}.type`, `filter ${JSON.stringify(f['type'])} is not supported by tsmesh (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror${m.kind === 'HTTPRoute' ? ', RequestRedirect, URLRewrite' : ''})`);
    }
  }
  return out;
}

function backends(v: unknown, path: string, m: Mapping): WeightedBackend[] {
  const out: WeightedBackend[] = [];
  for (const [i, b] of arr(v).map(obj).entries()) {
    const weight = num(b['weight']) ?? 1;
    // A backend of weight 0 gets no request: it drops out.
    if (weight === 0) continue;
    const ref = resolveRef(b, m.namespace, m.services, `${path}[${i}]`);
    if (ref.problem) m.problems.push(ref.problem);
    const f = filters(b['filters'], `${path}[${i}].filters`, m);
    out.push({ service: ref.service, weight, ...(ref.port !== undefined ? { port: ref.port } : {}), ...(f ? { filters: f } : {}) });
  }
  return out;
}

/** A regex alternative's characters escaped. */
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** HTTPRouteMatch -> RouteMatch and its precedence rank (higher first: exact, prefix length, method, headers, query parameters). */
function httpMatch(v: unknown, path: string): { match: RouteMatch; rank: number[] } {
  const m = obj(v);
  const match: RouteMatch = {};
  const p = obj(m['path']);
  const type = str(p['type']) ?? 'PathPrefix';
  const value = str(p['value']) ?? '/';
  let pathRank: number[];
  if (type === 'Exact') {
    match.pathExact = value;
    pathRank = [3, value.length];
  } else if (type === 'RegularExpression') {
    match.pathRegex = value;
    pathRank = [2, value.length];
  } else if (type === 'PathPrefix') {
    // Kept as written ("/" too: a rewrite's replacePrefixMatch needs the prefix it replaces); ranked without a trailing "/".
    match.pathPrefix = value;
    pathRank = [1, value.replace(/\/+$/, '').length];
  } else throw new ValidationError(`${path}.path.type`, `${JSON.stringify(type)} is not Exact, PathPrefix or RegularExpression`);
  let headers = 0;
  for (const [i, h] of arr(m['headers']).map(obj).entries()) {
    const name = (str(h['name']) ?? '').toLowerCase();
    const target = (str(h['type']) ?? 'Exact') === 'RegularExpression' ? (match.headerRegex ??= {}) : (match.headers ??= {});
    if (name === '') throw new ValidationError(`${path}.headers[${i}].name`, 'a header name is required');
    if (!(name in target)) target[name] = str(h['value']) ?? '';
    headers++;
  }
  let queries = 0;
  for (const [i, q] of arr(m['queryParams']).map(obj).entries()) {
    const name = str(q['name']) ?? '';
    const target = (str(q['type']) ?? 'Exact') === 'RegularExpression' ? (match.queryParamRegex ??= {}) : (match.queryParams ??= {});
    if (name === '') throw new ValidationError(`${path}.queryParams[${i}].name`, 'a query parameter name is required');
    if (!(name in target)) target[name] = str(q['value']) ?? '';
    queries++;
  }
  const method = str(m['method']);
  if (method !== undefined) match.method = method.toUpperCase();
  return { match, rank: [...pathRank, method !== undefined ? 1 : 0, headers, queries] };
}

/** GRPCRouteMatch -> path and header matches and its rank (characters of service, of method, header matches). */
function grpcMatch(v: unknown, path: string): { match: RouteMatch; rank: number[] } {
  const m = obj(v);
  const match: RouteMatch = {};
  const method = obj(m['method']);
  const service = str(method['service']);
  const name = str(method['method']);
  if (str(method['type']) === 'RegularExpression') {
    match.pathRegex = `/${service ?? '[^/]+'}/${name ?? '[^/]+'}`;
  } else if (service !== undefined && name !== undefined) {
    match.pathExact = `/${service}/${name}`;
  } else if (service !== undefined) {
    // A prefix would match /pkg.SvcX/ too: the service is a whole path segment.
    match.pathRegex = `/${escapeRegex(service)}/[^/]+`;
  } else if (name !== undefined) {
    match.pathRegex = `/[^/]+/${escapeRegex(name)}`;
  }
  let headers = 0;
  for (const [i, h] of arr(m['headers']).map(obj).entries()) {
    const hn = (str(h['name']) ?? '').toLowerCase();
    if (hn === '') throw new ValidationError(`${path}.headers[${i}].name`, 'a header name is required');
    const target = (str(h['type']) ?? 'Exact') === 'RegularExpression' ? (match.headerRegex ??= {}) : (match.headers ??= {});
    if (!(hn in target)) target[hn] = str(h['value']) ?? '';
    headers++;
  }
  // Exact methods before regular expressions (whose characters say nothing of what they match).
  return { match, rank: [str(method['type']) === 'RegularExpression' ? 0 : 1, (service ?? '').length, (name ?? '').length, headers] };
}

/** GEP-1731: codes and attempts (retries after the first try) and a backoff -> the contract's RetryPolicy (total tries). */
function retry(v: unknown): RetryPolicy | undefined {
  if (v === undefined) return undefined;
  const r = obj(v);
  const attempts = num(r['attempts']);
  const codes = arr(r['codes']).map((c) => String(c));
  const backoff = str(r['backoff']);
  return {
    // Unset: one retry. The budget of the mesh bounds them whatever the number.
    attempts: (attempts ?? 1) + 1,
    // The spec asks for retries on connection errors whenever retry is set.
    retryOn: [...new Set([...codes, 'connect-failure', 'reset'])],
    ...(backoff !== undefined ? { backoff: { base: backoff, max: backoff } } : {}),
  };
}

function mapRoute(o: RouteObject, kind: RouteKind, m: Mapping): GatewayRouteEntry[] {
  const spec = obj(o.spec);
  const namespace = o.metadata?.namespace ?? 'default';
  const name = o.metadata?.name ?? '';
  const entries: GatewayRouteEntry[] = [];
  const rules = arr(spec['rules']).map(obj);
  for (const [ri, rule] of (rules.length > 0 ? rules : [{}]).entries()) {
    const at = `spec.rules[${ri}]`;
    const ruleName = `${kind.toLowerCase()}/${namespace}/${name}/${str(rule['name']) ?? `rule-${ri}`}`;
    const f = filters(rule['filters'], `${at}.filters`, m);
    const timeouts = obj(rule['timeouts']);
    const retries = kind === 'HTTPRoute' ? retry(rule['retry']) : undefined;
    const bs = backends(rule['backendRefs'], `${at}.backendRefs`, m);
    const base: Route = {
      name: ruleName,
      // A redirect answers every request itself: it has no backends.
      ...(f?.redirect ? {} : { backends: bs }),
      ...(str(timeouts['request']) !== undefined && timeouts['request'] !== '0s' ? { timeout: timeouts['request'] as string } : {}),
      ...(str(timeouts['backendRequest']) !== undefined && timeouts['backendRequest'] !== '0s' ? { backendTimeout: timeouts['backendRequest'] as string } : {}),
      ...(retries ? { retries } : {}),
      ...(f ? { filters: f } : {}),
    };
    const matches = arr(rule['matches']);
    const mapped = matches.length > 0 ? matches.map((x, mi) => (kind === 'HTTPRoute' ? httpMatch(x, `${at}.matches[${mi}]`) : grpcMatch(x, `${at}.matches[${mi}]`))) : [kind === 'HTTPRoute' ? { match: {}, rank: [1, 0, 0, 0, 0] } : { match: {}, rank: [0, 0, 0] }];
    for (const [mi, { match, rank }] of mapped.entries()) {
      const route: Route = { ...base, ...(Object.keys(match).length > 0 ? { match } : {}) };
      entries.push({ route, rank, rule: ri, match: mi });
    }
  }
  // The proxy's own checks (regexes compile, header names are tokens, redirect codes, ...), named by rule and match.
  for (const e of entries) {
    try {
      parseTrafficPolicy({ routes: [e.route] }, `spec.rules[${e.rule}].matches[${e.match}]`);
    } catch (err) {
      if (err instanceof ValidationError) throw new ValidationError(err.path.replace('.routes[0]', ''), err.message.slice(err.message.indexOf(': ') + 2));
      throw err;
    }
  }
  return entries;
}

const ok = (reason: string, message: string): ConditionVerdict => ({ status: true, reason, message });
const no = (reason: string, message: string): ConditionVerdict => ({ status: false, reason, message });

/**
 * Every route's model (accepted parentRefs only) and its verdicts. `services`:
 * the model's Services; `accepted`: the last accepted model of each route
 * object (not modified; the result carries the next one).
 */
export function evaluateRoutes(input: { httpRoutes: readonly RouteObject[]; grpcRoutes: readonly RouteObject[]; services: readonly ServiceModel[]; accepted: AcceptedRoutes }): RoutesResult {
  const services = new Map(input.services.map((s) => [`${s.namespace}/${s.name}`, s]));
  const routes: GatewayRouteModel[] = [];
  const verdicts: RouteVerdict[] = [];
  const accepted: AcceptedRoutes = new Map();
  const all: [RouteKind, RouteObject][] = [...input.httpRoutes.map((r): [RouteKind, RouteObject] => ['HTTPRoute', r]), ...input.grpcRoutes.map((r): [RouteKind, RouteObject] => ['GRPCRoute', r])];
  for (const [kind, o] of all) {
    const namespace = o.metadata?.namespace ?? 'default';
    const name = o.metadata?.name ?? '';
    const uid = o.metadata?.uid ?? `${kind}/${namespace}/${name}`;
    const generation = o.metadata?.generation ?? 0;
    const refs = serviceParentRefs(obj(o.spec));
    if (refs.length === 0) {
      // Not a mesh route (a Gateway's): no model, and a verdict without parents, so an entry of ours left from an earlier version goes.
      verdicts.push({ kind, namespace, name, uid, generation, parents: [] });
      continue;
    }
    const m: Mapping = { kind, namespace, services, problems: [] };
    let entries: GatewayRouteEntry[] | undefined;
    let invalid: string | undefined;
    try {
      entries = mapRoute(o, kind, m);
    } catch (e) {
      invalid = e instanceof Error ? e.message : String(e);
    }
    const parents: GatewayRouteParent[] = [];
    const verdict: RouteVerdict = { kind, namespace, name, uid, generation, parents: [] };
    for (const ref of refs) {
      const svcNamespace = ref.namespace ?? namespace;
      const svc = services.get(`${svcNamespace}/${ref.name}`);
      let acc: ConditionVerdict;
      if (!svc) acc = no('NoMatchingParent', `Service ${svcNamespace}/${ref.name} does not exist`);
      else if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port)) acc = no('NoMatchingParent', `Service ${svcNamespace}/${ref.name} has no port ${ref.port} (ports: ${svc.ports.map((p) => p.port).join(', ') || 'none'})`);
      else if (ref.sectionName !== undefined && !svc.ports.some((p) => p.name === ref.sectionName))
        acc = no('NoMatchingParent', `Service ${svcNamespace}/${ref.name} has no port named ${ref.sectionName}`);
      else if (invalid !== undefined) acc = no('UnsupportedValue', `${invalid}; the last accepted version of this route stays in force, if any`);
      else acc = ok('Accepted', `attached to Service ${svcNamespace}/${ref.name}${ref.port !== undefined ? ` port ${ref.port}` : ''}`);
      const first = m.problems[0];
      const resolved = first ? no(first.reason, m.problems.map((p) => p.message).join('; ')) : ok('ResolvedRefs', 'every backendRef resolved');
      verdict.parents.push({ parentRef: ref, accepted: acc, resolvedRefs: resolved });
      if (acc.status && svc) {
        const port = ref.port ?? (ref.sectionName !== undefined ? svc.ports.find((p) => p.name === ref.sectionName)?.port : undefined);
        parents.push({ service: ref.name, namespace: svcNamespace, ...(port !== undefined ? { port } : {}) });
      }
    }
    verdicts.push(verdict);
    if (entries) {
      const model: GatewayRouteModel = { kind, namespace, name, ...(o.metadata?.creationTimestamp ? { createdAt: iso(o.metadata.creationTimestamp) } : {}), parents, entries };
      routes.push(model);
      accepted.set(uid, { generation, model });
    } else {
      const last = input.accepted.get(uid);
      if (last) {
        routes.push(last.model);
        accepted.set(uid, last);
      }
    }
  }
  const kept = refuseMixedKinds(routes, verdicts, services);
  kept.sort((a, b) => `${a.namespace}/${a.name}/${a.kind}`.localeCompare(`${b.namespace}/${b.name}/${b.kind}`));
  verdicts.sort((a, b) => `${a.namespace}/${a.name}/${a.kind}`.localeCompare(`${b.namespace}/${b.name}/${b.kind}`));
  return { routes: kept, verdicts, accepted };
}

/**
 * The spec: where HTTPRoutes and GRPCRoutes attach to one parent (here a
 * Service port, among the routes of one namespace: the producer's, or one
 * consumer namespace's), one kind is accepted, that of the older route. A
 * parentRef of the other kind naming that port is refused (Accepted False,
 * Conflicted); one for every port stays on the others, its message saying
 * which port it lost. The route's model changes as a copy: the accepted
 * models are evaluated afresh next time.
 */
function refuseMixedKinds(routes: readonly GatewayRouteModel[], verdicts: RouteVerdict[], services: ReadonlyMap<string, ServiceModel>): GatewayRouteModel[] {
  const out = [...routes];
  const covers = (p: { namespace?: string; name?: string; service?: string; port?: number }, svc: ServiceModel, port: number): boolean =>
    p.namespace === svc.namespace && (p.service ?? p.name) === svc.name && (p.port === undefined || p.port === port);
  const groups = new Map<string, Set<GatewayRouteModel>>();
  for (const r of routes) for (const p of r.parents) {
    const k = `${r.namespace}|${p.namespace}/${p.service}`;
    groups.set(k, (groups.get(k) ?? new Set()).add(r));
  }
  for (const [k, group] of groups) {
    const svc = services.get(k.slice(k.indexOf('|') + 1));
    if (!svc || new Set([...group].map((r) => r.kind)).size < 2) continue;
    for (const sp of svc.ports) {
      const on = [...group].filter((r) => r.parents.some((p) => covers(p, svc, sp.port)));
      const winner = [...on].sort(olderFirst)[0];
      if (!winner || on.every((r) => r.kind === winner.kind)) continue;
      for (const r of on.filter((x) => x.kind !== winner.kind)) {
        const i = out.findIndex((x) => x.kind === r.kind && x.namespace === r.namespace && x.name === r.name);
        // A parent for every port keeps the others.
        const without = (p: GatewayRouteParent): GatewayRouteParent[] =>
          !covers(p, svc, sp.port) ? [p] : p.port !== undefined ? [] : svc.ports.filter((q) => q.port !== sp.port).map((q) => ({ ...p, port: q.port }));
        if (i >= 0) out[i] = { ...out[i]!, parents: out[i]!.parents.flatMap(without) };
        const why = `${winner.kind} ${winner.namespace}/${winner.name} is older on Service ${svc.namespace}/${svc.name} port ${sp.port}, and HTTPRoutes and GRPCRoutes are not mixed on one port`;
        const verdict = verdicts.find((v) => v.kind === r.kind && v.namespace === r.namespace && v.name === r.name);
        for (const vp of verdict?.parents ?? []) {
          if (!vp.accepted.status || !covers({ ...vp.parentRef, namespace: vp.parentRef.namespace ?? r.namespace }, svc, sp.port)) continue;
          if (vp.parentRef.port !== undefined) vp.accepted = no('Conflicted', why);
          else vp.accepted = { ...vp.accepted, message: `${vp.accepted.message}; not on port ${sp.port}: ${why}` };
        }
      }
    }
  }
  return out;
}

const iso = (t: Date | string): string => (typeof t === 'string' ? t : t.toISOString());
