// One version of the model as the discovery stream sends it: each Service's
// entry serialised once (and once per caller namespace for a Service with
// Gateway API routes, whose consumer routes depend on it), each identity's
// own fields once, the digest of each identity's config (config-delta.ts),
// and what changed since the version before, to send as a delta. A whole
// config is joined from these strings, never rebuilt per identity.
import { addHash, configDigest, DELTA_KIND, entryHash, serviceKey } from '../contract/config-delta.js';
import { CONFIG_API_VERSION, CONFIG_KIND } from '../contract/proxy-config.js';
import type { MeshModel, ProxyIdentity, ServiceModel, TrafficPolicyModel } from './model.js';
import { proxyConfigTop, resolveTrafficPolicies, serviceConfig } from './snapshot.js';

interface Entry {
  json: string;
  h: bigint;
}

/** What one Service entry was made from, to reuse it while neither changed. */
interface SharedEntry extends Entry {
  service: ServiceModel;
  policy: TrafficPolicyModel | undefined;
}

/** What a config carries beside its Services, as JSON, for one identity. */
export interface ClassView {
  namespace: string;
  /** JSON of each field beside version and services (apiVersion, kind, mesh, inbound, telemetry, egress, trustBundle, retiredRoots). */
  fields: Record<string, string>;
  digest: string;
}

/** The order a config carries its fields in, `services` among them. */
const FIELD_ORDER = ['apiVersion', 'kind', 'mesh', 'services', 'inbound', 'telemetry', 'egress', 'trustBundle', 'retiredRoots'];

interface Changes {
  /** Services without routes that are new or changed. */
  shared: string[];
  /** Services with routes in either version: compared per caller namespace. */
  routed: string[];
  /** Services gone. */
  removed: string[];
}

export class ModelView {
  /** Service keys in the model's order. */
  private readonly keys: string[] = [];
  private readonly services = new Map<string, { service: ServiceModel; policy: TrafficPolicyModel | undefined }>();
  /** Entries of the Services without Gateway API routes: every caller sees the same. */
  private readonly shared = new Map<string, SharedEntry>();
  /** Services with Gateway API routes. */
  private readonly routed = new Set<string>();
  private sharedSum = 0n;
  /** Entries of the routed Services per caller namespace, made when a caller of that namespace needs them. */
  private readonly variants = new Map<string, Map<string, Entry>>();
  private readonly classes = new Map<string, ClassView>();
  /** The `services` array's JSON per caller namespace ('' for all when no Service has routes), joined once. */
  private readonly servicesJson = new Map<string, string>();
  /** For each endpoint identity, the Services with an endpoint of it (for the inbound policy of Services served). */
  private readonly servedBy = new Map<string, ServiceModel[]>();
  private readonly globals: Record<string, string>;
  private changes: { prev: ModelView; changes: Changes } | undefined;

  constructor(
    readonly model: MeshModel,
    readonly version: string,
    trustBundle: string,
    retiredRoots: readonly string[],
    prev?: ModelView,
  ) {
    const { byService } = resolveTrafficPolicies(model);
    const withRoutes = new Set((model.gatewayRoutes ?? []).flatMap((r) => r.parents.map((p) => serviceKey({ name: p.service, namespace: p.namespace }))));
    for (const s of model.services) {
      const key = serviceKey(s);
      const policy = byService.get(`${s.name}.${s.namespace}`);
      this.keys.push(key);
      this.services.set(key, { service: s, policy });
      for (const e of s.endpoints) {
        if (!e.identity) continue;
        const list = this.servedBy.get(e.identity);
        if (!list) this.servedBy.set(e.identity, [s]);
        else if (list.at(-1) !== s) list.push(s);
      }
      if (withRoutes.has(key)) {
        this.routed.add(key);
        continue;
      }
      const before = prev?.shared.get(key);
      let entry: SharedEntry;
      if (before && before.service === s && before.policy === policy) entry = before;
      else {
        const json = JSON.stringify(serviceConfig(model, s, policy, s.namespace));
        entry = before?.json === json ? { ...before, service: s, policy } : { json, h: entryHash(json), service: s, policy };
      }
      this.shared.set(key, entry);
      this.sharedSum = addHash(this.sharedSum, entry.h);
    }
    this.globals = {
      apiVersion: JSON.stringify(CONFIG_API_VERSION),
      kind: JSON.stringify(CONFIG_KIND),
      mesh: JSON.stringify(model.mesh),
      trustBundle: JSON.stringify(trustBundle),
      ...(retiredRoots.length > 0 ? { retiredRoots: JSON.stringify(retiredRoots) } : {}),
    };
  }

  private variant(namespace: string): Map<string, Entry> {
    let out = this.variants.get(namespace);
    if (!out) {
      out = new Map();
      for (const key of this.routed) {
        const { service, policy } = this.services.get(key)!;
        const json = JSON.stringify(serviceConfig(this.model, service, policy, namespace));
        out.set(key, { json, h: entryHash(json) });
      }
      this.variants.set(namespace, out);
    }
    return out;
  }

  /** Service `key` as a caller in `namespace` sees it; undefined when this version has no such Service. */
  private entry(key: string, namespace: string): Entry | undefined {
    return this.shared.get(key) ?? (this.routed.has(key) ? this.variant(namespace).get(key) : undefined);
  }

  /** What `identity`'s config carries beside its Services, and its digest. */
  classView(identity: ProxyIdentity): ClassView {
    let view = this.classes.get(identity.spiffeId);
    if (view) return view;
    const served = new Set((this.servedBy.get(identity.spiffeId) ?? []).filter((s) => s.namespace === identity.namespace).map((s) => s.name));
    const { apiVersion: _a, kind: _k, mesh: _m, ...own } = proxyConfigTop(this.model, identity, served);
    const fields: Record<string, string> = { ...this.globals };
    for (const [name, value] of Object.entries(own)) if (value !== undefined) fields[name] = JSON.stringify(value);
    let sum = this.sharedSum;
    if (this.routed.size > 0) for (const e of this.variant(identity.namespace).values()) sum = addHash(sum, e.h);
    view = { namespace: identity.namespace, fields, digest: configDigest(fields, sum) };
    this.classes.set(identity.spiffeId, view);
    return view;
  }

  /** The whole config of `identity` at this version, as a stream line's text (no newline), `version` first. */
  body(identity: ProxyIdentity, version = this.version): string {
    const { fields, namespace } = this.classView(identity);
    // Concatenated, not joined: the Services' JSON, most of the line, is not copied here.
    let out = `{"version":${JSON.stringify(version)}`;
    for (const name of FIELD_ORDER) {
      if (name === 'services') out += `,"services":` + this.servicesArray(namespace);
      else if (fields[name] !== undefined) out += `,${JSON.stringify(name)}:${fields[name]}`;
    }
    return out + '}';
  }

  private servicesArray(namespace: string): string {
    const key = this.routed.size > 0 ? namespace : '';
    let json = this.servicesJson.get(key);
    if (json === undefined) {
      json = `[${this.keys.map((k) => this.entry(k, namespace)!.json).join(',')}]`;
      this.servicesJson.set(key, json);
    }
    return json;
  }

  /** Lets go of the version before (the changes since it refer to it): once its deltas are sent, nothing needs it. */
  settle(): void {
    this.changes = undefined;
  }

  private changesSince(prev: ModelView): Changes {
    if (this.changes?.prev === prev) return this.changes.changes;
    const shared: string[] = [];
    for (const [key, e] of this.shared) if (prev.shared.get(key)?.json !== e.json) shared.push(key);
    const routed = [...new Set([...this.routed, ...prev.routed])].filter((k) => this.services.has(k));
    const removed = prev.keys.filter((k) => !this.services.has(k));
    const changes = { shared, routed, removed };
    this.changes = { prev, changes };
    return changes;
  }

  /**
   * What follows the base in the delta line that takes `identity`'s config
   * from `prev` to this version (deltaLine joins them); undefined when its
   * config did not change.
   */
  deltaTail(prev: ModelView, identity: ProxyIdentity): string | undefined {
    const now = this.classView(identity);
    const before = prev.classView(identity);
    if (now.digest === before.digest) return undefined;
    const ns = identity.namespace;
    const { shared, routed, removed } = this.changesSince(prev);
    const upsert: string[] = shared.map((k) => this.shared.get(k)!.json);
    for (const k of routed) {
      const e = this.entry(k, ns)!;
      if (prev.entry(k, ns)?.json !== e.json) upsert.push(e.json);
    }
    const set: string[] = [];
    for (const [name, json] of Object.entries(now.fields)) if (before.fields[name] !== json) set.push(`${JSON.stringify(name)}:${json}`);
    const unset = Object.keys(before.fields).filter((name) => now.fields[name] === undefined);
    return (
      `,"digest":"${now.digest}"` +
      (upsert.length > 0 ? `,"upsert":[${upsert.join(',')}]` : '') +
      (removed.length > 0 ? `,"remove":${JSON.stringify(removed)}` : '') +
      (set.length > 0 ? `,"set":{${set.join(',')}}` : '') +
      (unset.length > 0 ? `,"unset":${JSON.stringify(unset)}` : '') +
      '}'
    );
  }
}

/** A delta line (no newline): version, kind and base first, so a reader of the stream sees them at a glance. */
export function deltaLine(version: string, base: string, tail: string): string {
  return `{"version":${JSON.stringify(version)},"kind":"${DELTA_KIND}","base":${JSON.stringify(base)}${tail}`;
}
