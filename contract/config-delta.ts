// Deltas on the discovery stream (contract/DESIGN.md, "Config deltas"): a
// proxy that sends DELTAS_HEADER with GET /v1/config gets a whole config
// first, then lines that carry only what changed since the version it holds,
// each with the digest of the config it yields. Both ends compute that
// digest here, from the JSON of the config's parts, so a proxy can tell a
// delta it applied from the config the control plane meant.
const { createHash } = process.getBuiltinModule('node:crypto');

/** The `kind` of a delta line (a whole config's is ProxyConfig). */
export const DELTA_KIND = 'ProxyConfigDelta';

/** One delta line, as sent (`version` first). */
export interface ProxyConfigDelta {
  /** The version the proxy holds once it applied this delta. */
  version: string;
  kind: typeof DELTA_KIND;
  /** The version this delta applies to: a proxy holding another one asks for a whole config. */
  base: string;
  /** The digest (configDigest) of the config this delta yields. */
  digest: string;
  /** Services added or changed, whole (a ServiceConfig each). */
  upsert?: unknown[];
  /** Services gone, by serviceKey. */
  remove?: string[];
  /** Fields beside version and services that changed, whole (inbound, trustBundle, mesh...). */
  set?: Record<string, unknown>;
  /** Fields beside version and services that are gone (retiredRoots, telemetry, egress). */
  unset?: string[];
}

/** How a delta names a Service: namespace/name. */
export function serviceKey(s: { name?: unknown; namespace?: unknown }): string {
  return `${String(s.namespace)}/${String(s.name)}`;
}

const MASK = (1n << 64n) - 1n;

/** A Service entry's share of a digest: the first 64 bits of SHA-256 of its JSON. */
export function entryHash(json: string): bigint {
  return BigInt(`0x${createHash('sha256').update(json).digest('hex').slice(0, 16)}`);
}

/** The sum of a set of entry hashes, modulo 2^64: order-free, and kept up to date by adding and subtracting. */
export function addHash(sum: bigint, h: bigint): bigint {
  return (sum + h) & MASK;
}
export function subHash(sum: bigint, h: bigint): bigint {
  return (sum - h) & MASK;
}

/**
 * The digest of a config: SHA-256 of, for each field beside `version` and
 * `services` in name order, `name=<its JSON>\n`, then `services=<the sum of
 * the Services' entry hashes, 16 hex digits>`.
 */
export function configDigest(fields: Readonly<Record<string, string>>, servicesSum: bigint): string {
  const hash = createHash('sha256');
  for (const name of Object.keys(fields).sort()) if (name !== 'version' && name !== 'services') hash.update(`${name}=${fields[name]}\n`);
  hash.update(`services=${servicesSum.toString(16).padStart(16, '0')}`);
  return hash.digest('hex').slice(0, 32);
}
