// SPIFFE IDs per the SPIFFE ID specification (spiffe/standards, SPIFFE-ID.md §2).

export const SPIFFE_SCHEME = 'spiffe://';
/** The trust domain of a mesh that names none (contract/DESIGN.md). */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const MAX_SPIFFE_ID_LENGTH = 2048;
export const MAX_TRUST_DOMAIN_LENGTH = 255;

/** The rule a rejected SPIFFE ID broke; stable, for callers and tests. */
export type SpiffeRule =
  | 'empty'
  | 'too-long'
  | 'scheme'
  | 'trust-domain-empty'
  | 'trust-domain-too-long'
  | 'trust-domain-chars'
  | 'no-userinfo-or-port'
  | 'no-query-or-fragment'
  | 'path-empty-segment'
  | 'path-dot-segment'
  | 'path-chars'
  | 'path-trailing-slash';

export class SpiffeIdError extends Error {
  override name = 'SpiffeIdError';
  constructor(
    readonly rule: SpiffeRule,
    readonly input: string,
    detail: string,
  ) {
    super(`invalid SPIFFE ID ${JSON.stringify(input.length > 80 ? input.slice(0, 80) + '...' : input)}: ${detail} [rule: ${rule}]`);
  }
}

export interface SpiffeId {
  trustDomain: string;
  /** '' for a trust domain ID, else '/seg/seg'. */
  path: string;
}

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;

export function validateTrustDomain(td: string, input = td): void {
  if (td.length === 0) throw new SpiffeIdError('trust-domain-empty', input, 'the trust domain is empty');
  if (td.length > MAX_TRUST_DOMAIN_LENGTH)
    throw new SpiffeIdError('trust-domain-too-long', input, `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  if (/[@:]/.test(td))
    throw new SpiffeIdError('no-userinfo-or-port', input, 'the trust domain must not carry a user, password or port');
  if (!TRUST_DOMAIN_CHARS.test(td))
    throw new SpiffeIdError('trust-domain-chars', input, 'the trust domain may hold only lowercase letters, digits, ".", "-" and "_"');
}

export function validatePath(path: string, input = path): void {
  if (path === '') return;
  if (!path.startsWith('/')) throw new SpiffeIdError('path-chars', input, 'a path must start with "/"');
  if (path.endsWith('/')) throw new SpiffeIdError('path-trailing-slash', input, 'the path must not end with "/"');
  for (const seg of path.slice(1).split('/')) {
    if (seg === '') throw new SpiffeIdError('path-empty-segment', input, 'the path has an empty segment ("//")');
    if (seg === '.' || seg === '..') throw new SpiffeIdError('path-dot-segment', input, `the path must not contain a "${seg}" segment`);
    if (!SEGMENT_CHARS.test(seg))
      throw new SpiffeIdError('path-chars', input, `segment "${seg}" may hold only letters, digits, ".", "-" and "_" (no percent-encoding)`);
  }
}

export function parseSpiffeId(input: string): SpiffeId {
  if (input.length === 0) throw new SpiffeIdError('empty', input, 'the ID is empty');
  if (Buffer.byteLength(input) > MAX_SPIFFE_ID_LENGTH)
    throw new SpiffeIdError('too-long', input, `the ID is longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  if (!input.startsWith(SPIFFE_SCHEME))
    throw new SpiffeIdError('scheme', input, 'the ID must start with "spiffe://" (lowercase scheme)');
  const rest = input.slice(SPIFFE_SCHEME.length);
  if (/[?#]/.test(rest)) throw new SpiffeIdError('no-query-or-fragment', input, 'the ID must not carry a query or fragment');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  validateTrustDomain(trustDomain, input);
  validatePath(path, input);
  return { trustDomain, path };
}

export function isSpiffeId(input: string): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

export function formatSpiffeId(id: SpiffeId): string {
  const out = SPIFFE_SCHEME + id.trustDomain + id.path;
  parseSpiffeId(out);
  return out;
}

export function trustDomainId(trustDomain: string): string {
  return formatSpiffeId({ trustDomain, path: '' });
}

/** The identity of a Kubernetes workload: spiffe://<td>/ns/<namespace>/sa/<serviceaccount>. */
export function workloadSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return formatSpiffeId({ trustDomain, path: `/ns/${namespace}/sa/${serviceAccount}` });
}

export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** Reads namespace and service account back from a workload ID; undefined for IDs of another shape. */
export function parseWorkloadSpiffeId(input: string): WorkloadIdentity | undefined {
  const { trustDomain, path } = parseSpiffeId(input);
  const m = /^\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(path);
  return m ? { trustDomain, namespace: m[1]!, serviceAccount: m[2]! } : undefined;
}
