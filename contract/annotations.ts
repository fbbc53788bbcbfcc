// Settings a namespace or a workload writes over the mesh's, as annotations
// (on the Namespace; on the workload's pods, which a ServiceAccount's proxies
// share), read the same way by the control plane (Kubernetes, and the mesh
// file's `namespaces:` and `workloads:` entries, which carry the same
// annotations) and by the injector, which refuses a pod whose value it
// cannot read. The most specific wins, field by field: the workload's, then
// its namespace's, then tsmesh-config's.
import { ValidationError, describe, join } from '../lib/schema.js';
import { INBOUND_POLICY_ANNOTATIONS, TELEMETRY_ANNOTATIONS } from './names.js';
import { EGRESS_ANNOTATIONS } from './names.js';
import type { EgressRule } from './proxy-config.js';
import { parseEgressCidr, parseEgressHost } from './validate.js';
import { EGRESS_MODES, type EgressMode } from './vocabulary.js';
import type { AccessLogSettings, TracingSettings } from './proxy-config.js';
import { parseAccessLogOverride, parseTracingOverride } from './validate.js';
import { ACCESS_LOG_MODES } from './vocabulary.js';
import { DEFAULT_INBOUND_POLICIES, MTLS_MODES, type DefaultInboundPolicy, type MtlsMode } from './vocabulary.js';

export interface ScopedSettings {
  /** tsmesh.io/mtls-mode */
  mtlsMode?: MtlsMode;
  /** tsmesh.io/port-mtls-modes: "8080=PERMISSIVE,9090=STRICT" */
  portMtlsModes?: Record<string, MtlsMode>;
  /** tsmesh.io/default-inbound-policy */
  defaultInboundPolicy?: DefaultInboundPolicy;
  /** tsmesh.io/tracing: the span-export fields it sets. */
  tracing?: Partial<TracingSettings>;
  /** tsmesh.io/access-log: the access-log fields it sets. */
  accessLog?: Partial<AccessLogSettings>;
  /** tsmesh.io/egress-mode */
  egressMode?: EgressMode;
  /** tsmesh.io/egress-allow: entries added to the more general scopes' (an entry of the same name replaces theirs). */
  egressAllow?: EgressRule[];
}

export const TRACING_HINT = 'expected on, off, or comma-separated export=on|off, sampling=0-1, collector=URL, like "on,sampling=0.1"';
export const ACCESS_LOG_HINT = 'expected off, all, errors or sampled, and comma-separated sampling=0-1, query=on|off, like "sampled,sampling=0.05"';

/** A yes-or-no value of a key=value annotation item. */
function onOff(v: string, item: string, path: string): boolean {
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  throw new ValidationError(path, `${describe(item)} is not on or off`);
}

/**
 * A telemetry annotation's items, comma-separated: a word that `words` maps to
 * a field and its value, or key=value for a key of `keys`, each field once.
 */
function annotationFields(value: string, path: string, what: string, hint: string, words: Record<string, [string, unknown]>, keys: Record<string, (v: string, item: string) => unknown>): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const raw of value.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const m = /^([a-z]+)\s*=\s*(\S+)$/.exec(item);
    const word = Object.hasOwn(words, item) ? words[item] : undefined;
    const parse = m && Object.hasOwn(keys, m[1]!) ? keys[m[1]!] : undefined;
    if (word === undefined && parse === undefined) throw new ValidationError(path, `${describe(item)} is not ${what} setting; ${hint}`);
    const [key, v] = word ?? [m![1]!, parse!(m![2]!, item)];
    if (key in doc) throw new ValidationError(path, `${describe(item)}: ${key} is given twice`);
    doc[key] = v;
  }
  return doc;
}

/** "on", "off", or "export=on,sampling=0.1,collector=http://..." -> the tracing fields it sets. */
export function parseTracingAnnotation(value: string, path: string): Partial<TracingSettings> {
  const doc = annotationFields(value, path, 'a tracing', TRACING_HINT, { on: ['export', true], off: ['export', false] }, { export: (v, item) => onOff(v, item, path), sampling: Number, collector: String });
  return parseTracingOverride(doc, path);
}

/** "errors", or "sampled,sampling=0.05,query=on" -> the access-log fields it sets. */
export function parseAccessLogAnnotation(value: string, path: string): Partial<AccessLogSettings> {
  const words = Object.fromEntries(ACCESS_LOG_MODES.map((mode): [string, [string, unknown]] => [mode, ['mode', mode]]));
  const doc = annotationFields(value, path, 'an access log', ACCESS_LOG_HINT, words, { mode: String, sampling: Number, query: (v, item) => onOff(v, item, path) });
  return parseAccessLogOverride(doc, path);
}

export const EGRESS_ALLOW_HINT = 'expected comma-separated host[:port] or CIDR[:port] items like "api.example.com:443,*.example.org,10.1.0.0/16:5432" (an IPv6 range as [fd00::/8]:443)';

/**
 * "api.example.com:443,*.example.org,10.1.0.0/16:5432" -> one entry per
 * item, named as written; without a port an item allows every port. TLS
 * origination is set in tsmesh-config or the mesh file, not here.
 */
export function parseEgressAllowAnnotation(value: string, path: string): EgressRule[] {
  const out: EgressRule[] = [];
  for (const raw of value.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const bracketed = /^\[([^\]]*)\](?::(\d{1,5}))?$/.exec(item);
    const hostPort = /^([^:]+):(\d{1,5})$/.exec(item);
    const [dest, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : hostPort ? [hostPort[1]!, hostPort[2]] : [item, undefined];
    const port = portText === undefined ? undefined : Number(portText);
    if (port !== undefined && (port < 1 || port > 65535)) throw new ValidationError(path, `${describe(item)} has no port 1-65535; ${EGRESS_ALLOW_HINT}`);
    const isAddress = bracketed !== null || /^[\d.]+(\/\d+)?$/.test(dest) || (dest.includes(':') && /^[\da-f:.]+(\/\d+)?$/i.test(dest));
    let rule: EgressRule;
    try {
      rule = isAddress ? { name: item, cidrs: [parseEgressCidr(dest, path)] } : { name: item, hosts: [parseEgressHost(dest, path)] };
    } catch (e) {
      throw new ValidationError(path, `${describe(item)}: ${(e as ValidationError).message.replace(/^[^:]*: /, '')}; ${EGRESS_ALLOW_HINT}`);
    }
    if (port !== undefined) rule.ports = [port];
    if (out.some((r) => r.name === rule.name)) throw new ValidationError(path, `${describe(item)} is given twice`);
    out.push(rule);
  }
  return out;
}

export const PORT_MTLS_MODES_HINT = 'expected comma-separated port=MODE pairs like 8080=PERMISSIVE,9090=STRICT';

function oneOfAnnotation<T extends string>(value: string, path: string, values: readonly T[]): T {
  const v = value.trim();
  if (!values.includes(v as T)) throw new ValidationError(path, `${describe(value)} is not one of ${values.join(', ')}`);
  return v as T;
}

/** "8080=PERMISSIVE,9090=STRICT" -> { "8080": "PERMISSIVE", "9090": "STRICT" } */
export function parsePortMtlsModes(value: string, path: string): Record<string, MtlsMode> {
  const out: Record<string, MtlsMode> = {};
  for (const raw of value.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const m = /^(\d{1,5})\s*=\s*(\S+)$/.exec(item);
    const port = m ? Number(m[1]) : 0;
    if (!m || port < 1 || port > 65535) throw new ValidationError(path, `${describe(item)} is not a port and an mTLS mode; ${PORT_MTLS_MODES_HINT}`);
    if (out[port] !== undefined) throw new ValidationError(path, `port ${port} is given twice`);
    out[port] = oneOfAnnotation(m[2]!, path, MTLS_MODES);
  }
  return out;
}

/**
 * The settings `annotations` set; other annotations are ignored. Throws a
 * ValidationError whose path is `path` joined with the annotation's name.
 */
export function scopedSettings(annotations: Readonly<Record<string, string>> | undefined, path = 'annotations'): ScopedSettings {
  const a = INBOUND_POLICY_ANNOTATIONS;
  const out: ScopedSettings = {};
  /** What an annotation read by `parse` sets; undefined when it is absent or sets nothing. */
  const fields = <T extends object>(name: string, parse: (value: string, path: string) => T): T | undefined => {
    const value = annotations?.[name];
    const parsed = value === undefined ? undefined : parse(value, join(path, name));
    return parsed && Object.keys(parsed).length > 0 ? parsed : undefined;
  };
  const mtls = annotations?.[a.mtlsMode];
  if (mtls !== undefined) out.mtlsMode = oneOfAnnotation(mtls, join(path, a.mtlsMode), MTLS_MODES);
  const ports = fields(a.portMtlsModes, parsePortMtlsModes);
  if (ports) out.portMtlsModes = ports;
  const policy = annotations?.[a.defaultInboundPolicy];
  if (policy !== undefined) out.defaultInboundPolicy = oneOfAnnotation(policy, join(path, a.defaultInboundPolicy), DEFAULT_INBOUND_POLICIES);
  const tracing = fields(TELEMETRY_ANNOTATIONS.tracing, parseTracingAnnotation);
  if (tracing) out.tracing = tracing;
  const accessLog = fields(TELEMETRY_ANNOTATIONS.accessLog, parseAccessLogAnnotation);
  if (accessLog) out.accessLog = accessLog;
  const egressMode = annotations?.[EGRESS_ANNOTATIONS.mode];
  if (egressMode !== undefined) out.egressMode = oneOfAnnotation(egressMode, join(path, EGRESS_ANNOTATIONS.mode), EGRESS_MODES);
  const egressAllow = fields(EGRESS_ANNOTATIONS.allow, parseEgressAllowAnnotation);
  if (egressAllow) out.egressAllow = egressAllow;
  return out;
}

/** `specific` over `general`, field by field (per port for portMtlsModes). */
export function layerSettings(general: ScopedSettings | undefined, specific: ScopedSettings | undefined): ScopedSettings {
  const out: ScopedSettings = { ...general, ...specific };
  if (general?.portMtlsModes && specific?.portMtlsModes) out.portMtlsModes = { ...general.portMtlsModes, ...specific.portMtlsModes };
  if (general?.tracing && specific?.tracing) out.tracing = { ...general.tracing, ...specific.tracing };
  if (general?.accessLog && specific?.accessLog) out.accessLog = { ...general.accessLog, ...specific.accessLog };
  if (general?.egressAllow && specific?.egressAllow) out.egressAllow = mergeEgressAllow(general.egressAllow, specific.egressAllow);
  return out;
}

/** `general`'s entries then `specific`'s, an entry of `specific` replacing one of `general` of the same name. */
export function mergeEgressAllow(general: readonly EgressRule[], specific: readonly EgressRule[]): EgressRule[] {
  const names = new Set(specific.map((r) => r.name));
  return [...general.filter((r) => !names.has(r.name)), ...specific];
}

const MTLS_STRICTNESS: Record<MtlsMode, number> = { PERMISSIVE: 0, STRICT: 1 };
const POLICY_STRICTNESS: Record<DefaultInboundPolicy, number> = { 'all-unauthenticated': 0, 'all-authenticated': 1, deny: 2 };
const EGRESS_STRICTNESS: Record<EgressMode, number> = { 'allow-all': 0, 'registry-only': 1 };

/** The stricter of two mTLS modes. */
export const stricterMtls = (a: MtlsMode, b: MtlsMode): MtlsMode => (MTLS_STRICTNESS[a] >= MTLS_STRICTNESS[b] ? a : b);
/** The stricter of two default inbound policies. */
export const stricterPolicy = (a: DefaultInboundPolicy, b: DefaultInboundPolicy): DefaultInboundPolicy => (POLICY_STRICTNESS[a] >= POLICY_STRICTNESS[b] ? a : b);
/** The stricter of two egress modes. */
export const stricterEgress = (a: EgressMode, b: EgressMode): EgressMode => (EGRESS_STRICTNESS[a] >= EGRESS_STRICTNESS[b] ? a : b);
