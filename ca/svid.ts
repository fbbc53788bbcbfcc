// Reading a peer's certificate as an X.509-SVID (SPIFFE X509-SVID.md §2,
// §3.1, §4.1, §4.3, §5.2): the leaf must be CA:FALSE, carry keyUsage with
// digitalSignature and without keyCertSign or cRLSign, and exactly one URI
// SAN, a valid SPIFFE ID (SPIFFE-ID.md §2) with a path, in a trust domain the
// caller accepts. The chain and the validity period are TLS's to check
// (rejectUnauthorized); this reads the leaf's DER (8-30 us here, beside the
// milliseconds of a handshake).
import { Tag, decodeOid, readChildren, readOne, readTlv, type Tlv } from './der.js';
import { OID } from './oids.js';
import { SPIFFE_SCHEME, SpiffeIdError, parseSpiffeId } from '../contract/spiffe.js';
import type { RefusalReason } from '../contract/vocabulary.js';

/** The rule a refused certificate broke; stable, for logs and tests. */
export type SvidRule = 'malformed' | 'ca' | 'key-usage' | 'digital-signature' | 'key-cert-sign' | 'crl-sign' | 'uri-san-count' | 'spiffe-id' | 'no-path' | 'trust-domain';

export class SvidError extends Error {
  override name = 'SvidError';
  readonly code = 'ERR_TSMESH_SVID';
  constructor(
    readonly rule: SvidRule,
    message: string,
  ) {
    super(message);
  }

  /** The `reason` of tsmesh_connections_refused_total: a good SVID of another trust domain, or no SVID at all. */
  get reason(): Extract<RefusalReason, 'foreign-trust-domain' | 'invalid-svid'> {
    return this.rule === 'trust-domain' ? 'foreign-trust-domain' : 'invalid-svid';
  }
}

// KeyUsage (RFC 5280 §4.2.1.3): bits counted from the first bit of the BIT STRING.
const DIGITAL_SIGNATURE = 0;
const KEY_CERT_SIGN = 5;
const CRL_SIGN = 6;
/** GeneralName [6] uniformResourceIdentifier, IMPLICIT IA5String. */
const URI_NAME = 0x86;

/** What the rules read from a leaf: basicConstraints cA, the keyUsage BIT STRING (undefined: absent) and the URI SANs. */
export interface LeafFacts {
  ca: boolean;
  keyUsage: Buffer | undefined;
  uris: string[];
}

const malformed = (what: string): SvidError => new SvidError('malformed', `the certificate cannot be read as X.509 (${what})`);

/** The facts of a DER certificate; throws SvidError malformed for what X.509 does not allow (a repeated extension, a bad encoding). */
export function readLeafFacts(der: Buffer): LeafFacts {
  const facts: LeafFacts = { ca: false, keyUsage: undefined, uris: [] };
  let tbs: Tlv[];
  try {
    tbs = readChildren(readChildren(readOne(der, Tag.SEQUENCE, 'certificate').value)[0]!.value);
  } catch (e) {
    throw malformed((e as Error).message);
  }
  const exts = tbs.find((t) => t.tag === 0xa3);
  if (!exts) return facts;
  const seen = new Set<string>();
  try {
    for (const ext of readChildren(readTlv(exts.value).value)) {
      const parts = readChildren(ext.value);
      const id = decodeOid(parts[0]!.value);
      if (seen.has(id)) throw malformed(`extension ${id} appears twice`);
      seen.add(id);
      const value = parts[parts.length - 1]!;
      if (value.tag !== Tag.OCTET_STRING) throw malformed(`extension ${id} has no value`);
      const inner = readTlv(value.value);
      if (id === OID.basicConstraints) {
        const first = readChildren(inner.value)[0];
        facts.ca = first?.tag === Tag.BOOLEAN && first.value[0] !== 0;
      } else if (id === OID.keyUsage) {
        if (inner.tag !== Tag.BIT_STRING || inner.value.length === 0) throw malformed('keyUsage is not a BIT STRING');
        facts.keyUsage = inner.value.subarray(1);
      } else if (id === OID.subjectAltName) {
        for (const name of readChildren(inner.value)) if (name.tag === URI_NAME) facts.uris.push(name.value.toString('latin1'));
      }
    }
  } catch (e) {
    throw e instanceof SvidError ? e : malformed((e as Error).message);
  }
  return facts;
}

const bit = (bits: Buffer, n: number): boolean => ((bits[n >> 3] ?? 0) & (0x80 >> (n & 7))) !== 0;

/**
 * The SPIFFE ID of a leaf certificate (DER) that is an X.509-SVID of
 * `trustDomain`; throws SvidError saying which rule it breaks. The scheme is
 * read case-insensitively (SPIFFE-ID.md §2.4) and returned as `spiffe://`.
 */
export function svidSpiffeId(der: Buffer, trustDomain: string): string {
  const leaf = readLeafFacts(der);
  if (leaf.ca) throw new SvidError('ca', 'the certificate is a CA certificate (basicConstraints CA:TRUE); an X.509-SVID leaf is CA:FALSE');
  if (!leaf.keyUsage) throw new SvidError('key-usage', 'the certificate has no keyUsage extension; an X.509-SVID leaf sets keyUsage digitalSignature');
  if (!bit(leaf.keyUsage, DIGITAL_SIGNATURE)) throw new SvidError('digital-signature', 'the certificate\'s keyUsage lacks digitalSignature, which an X.509-SVID leaf sets');
  if (bit(leaf.keyUsage, KEY_CERT_SIGN)) throw new SvidError('key-cert-sign', 'the certificate\'s keyUsage sets keyCertSign, which only a signing certificate may');
  if (bit(leaf.keyUsage, CRL_SIGN)) throw new SvidError('crl-sign', 'the certificate\'s keyUsage sets cRLSign, which only a signing certificate may');
  if (leaf.uris.length !== 1)
    throw new SvidError('uri-san-count', `the certificate carries ${leaf.uris.length === 0 ? 'no URI SAN' : `${leaf.uris.length} URI SANs`}; an X.509-SVID carries exactly one, its SPIFFE ID`);
  const uri = leaf.uris[0]!;
  const id = uri.slice(0, SPIFFE_SCHEME.length).toLowerCase() === SPIFFE_SCHEME ? SPIFFE_SCHEME + uri.slice(SPIFFE_SCHEME.length) : uri;
  let parsed;
  try {
    parsed = parseSpiffeId(id);
  } catch (e) {
    if (e instanceof SpiffeIdError) throw new SvidError('spiffe-id', `the certificate's URI SAN is not a SPIFFE ID: ${e.message}`);
    throw e;
  }
  if (parsed.path === '') throw new SvidError('no-path', `the certificate's SPIFFE ID ${id} has no path; only a signing certificate is named by its trust domain alone`);
  if (parsed.trustDomain !== trustDomain)
    throw new SvidError('trust-domain', `the certificate's SPIFFE ID ${id} is of trust domain ${parsed.trustDomain}; this mesh accepts only trust domain ${trustDomain}`);
  return id;
}
