// A corpus of certificates for judging X.509-SVID validation: each is signed
// (by the mesh's root unless it says otherwise) from DER written with the
// CA's own encoder (ca/der.ts), so one knob at a time can break one rule of
// the SPIFFE X509-SVID and SPIFFE-ID specifications. `valid` is what those
// specifications say a validator must decide; the tests compare it with
// go-spiffe's verdict and tsmesh's.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import type { CertificateAuthority } from '../../ca/authority.js';
import { buildCsrPem } from '../../ca/csr.js';
import { Tag, bitString, bool, derToPem, extension, oid, readChildren, readOne, seq, tlv, unsignedInteger, x509Time } from '../../ca/der.js';
import { OID } from '../../ca/oids.js';
import type { CaKeyPair } from '../../ca/root.js';

/** KeyUsage bits (RFC 5280 §4.2.1.3), numbered from the first bit of the BIT STRING. */
export const KU = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;

export interface LeafSpec {
  /** URI SANs, written byte for byte. */
  uris?: readonly string[];
  dnsNames?: readonly string[];
  /** basicConstraints cA; undefined leaves the extension out. */
  ca?: boolean | undefined;
  /** KeyUsage bits set; undefined leaves the extension out. */
  keyUsage?: readonly number[] | undefined;
  /** EKU serverAuth and clientAuth (default true). */
  eku?: boolean;
  notBefore?: Date;
  notAfter?: Date;
}

export interface CorpusCert {
  name: string;
  /** What the specifications decide: accepted as an X.509-SVID of the mesh's trust domain, or not. */
  valid: boolean;
  /** The rule broken, in words (the table's last column). */
  why: string;
  /** Leaf first, then intermediates: what the peer presents. */
  chainPem: string;
  /** PKCS#8 PEM of the leaf's key. */
  keyPem: string;
  /** The URI SAN, when there is exactly one. */
  uri: string | undefined;
}

function keyUsageBits(bits: readonly number[]): Buffer {
  const bytes = Buffer.alloc(2);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  const used = bytes[1] === 0 ? bytes.subarray(0, 1) : bytes;
  const last = used[used.length - 1]!;
  let unused = 0;
  while (unused < 7 && (last & (1 << unused)) === 0) unused++;
  return tlv(Tag.BIT_STRING, Buffer.from([last === 0 ? 0 : unused]), used);
}

const ECDSA_SHA256 = seq(oid(OID.ecdsaWithSHA256));
const SUBJECT = seq(tlv(Tag.SET, seq(oid('2.5.4.3'), tlv(Tag.UTF8_STRING, Buffer.from('svid-corpus')))));

/** A certificate for `leafKey` signed by `issuer`, built to `spec`. */
export function signLeaf(spec: LeafSpec, issuer: CaKeyPair, leafKey: KeyObject, now = Date.now()): string {
  const issuerDer = new X509Certificate(issuer.certPem).raw;
  const issuerTbs = readChildren(readChildren(readOne(issuerDer, Tag.SEQUENCE, 'issuer').value)[0]!.value);
  const issuerName = issuerTbs[5]!.raw;
  const exts: Buffer[] = [];
  if (spec.ca !== undefined) exts.push(extension(OID.basicConstraints, true, spec.ca ? seq(bool(true)) : seq()));
  if (spec.keyUsage !== undefined) exts.push(extension(OID.keyUsage, true, keyUsageBits(spec.keyUsage)));
  if (spec.eku ?? true) exts.push(extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))));
  const names = [...(spec.uris ?? []).map((u) => tlv(0x86, Buffer.from(u, 'latin1'))), ...(spec.dnsNames ?? []).map((d) => tlv(0x82, Buffer.from(d, 'latin1')))];
  if (names.length > 0) exts.push(extension(OID.subjectAltName, false, seq(...names)));
  const spki = createPublicKey(leafKey).export({ type: 'spki', format: 'der' });
  const serial = Buffer.from([0x40, ...Array.from({ length: 15 }, () => Math.floor(Math.random() * 256))]);
  const tbs = seq(
    tlv(0xa0, tlv(Tag.INTEGER, Buffer.from([2]))),
    unsignedInteger(serial),
    ECDSA_SHA256,
    issuerName,
    seq(x509Time(spec.notBefore ?? new Date(now - 60_000)), x509Time(spec.notAfter ?? new Date(now + 3600_000))),
    SUBJECT,
    spki,
    tlv(0xa3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, createPrivateKey(issuer.keyPem));
  return derToPem(seq(tbs, ECDSA_SHA256, bitString(signature)), 'CERTIFICATE');
}

export interface CorpusOptions {
  /** The mesh's root and its CA (for one certificate issued the way the mesh issues them). */
  root: CaKeyPair;
  ca: CertificateAuthority;
  /** An intermediate under `root`. */
  intermediate: CaKeyPair;
  /** A root the mesh does not trust. */
  foreignRoot: CaKeyPair;
  /** The mesh's trust domain. */
  trustDomain: string;
}

export function buildCorpus(o: CorpusOptions): CorpusCert[] {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  const td = o.trustDomain;
  const good = `spiffe://${td}/ns/demo/sa/a`;
  const leaf: LeafSpec = { uris: [good], ca: false, keyUsage: [KU.digitalSignature] };
  const hour = 3600_000;
  const now = Date.now();
  const out: CorpusCert[] = [];
  const add = (name: string, valid: boolean, why: string, spec: Partial<LeafSpec>, issuer: CaKeyPair = o.root, chainTail = ''): void => {
    const full = { ...leaf, ...spec };
    const uris = full.uris ?? [];
    out.push({ name, valid, why, chainPem: signLeaf(full, issuer, key, now) + chainTail, keyPem, uri: uris.length === 1 ? uris[0] : undefined });
  };

  const issued = o.ca.signWorkloadCsr(buildCsrPem(key, good), good);
  out.push({ name: 'issued by the tsmesh CA', valid: true, why: 'an SVID as the mesh issues them', chainPem: issued.certChainPem, keyPem, uri: good });
  add('good SVID', true, 'CA:FALSE, digitalSignature, one URI SAN', {});
  add('good, with a DNS SAN too', true, 'other SAN types may accompany the URI', { dnsNames: ['a.demo.svc'] });
  add('good, keyEncipherment too', true, 'a leaf may also set keyEncipherment', { keyUsage: [KU.digitalSignature, KU.keyEncipherment] });
  add('good, no basicConstraints', true, 'no basicConstraints is CA:FALSE', { ca: undefined });
  add('good, no extendedKeyUsage', true, 'extendedKeyUsage is only recommended', { eku: false });
  add('good, via an intermediate', true, 'leaf and intermediate chain to the root', {}, o.intermediate, o.intermediate.certPem);
  add('another trust domain', false, 'spiffe://evil.example is not the mesh', { uris: [`spiffe://evil.example/ns/demo/sa/a`] });
  add('CA:TRUE leaf', false, 'a leaf must be CA:FALSE', { ca: true });
  add('no keyUsage', false, 'keyUsage with digitalSignature is required', { keyUsage: undefined });
  add('keyUsage without digitalSignature', false, 'digitalSignature is required', { keyUsage: [KU.keyEncipherment] });
  add('keyCertSign on the leaf', false, 'a leaf must not set keyCertSign', { keyUsage: [KU.digitalSignature, KU.keyCertSign] });
  add('cRLSign on the leaf', false, 'a leaf must not set cRLSign', { keyUsage: [KU.digitalSignature, KU.cRLSign] });
  add('two URI SANs', false, 'exactly one URI SAN', { uris: [good, `spiffe://${td}/ns/demo/sa/b`] });
  add('no URI SAN', false, 'exactly one URI SAN', { uris: [] });
  add('a DNS SAN only', false, 'exactly one URI SAN', { uris: [], dnsNames: ['a.demo.svc'] });
  const bad = (name: string, why: string, uri: string): void => add(name, false, why, { uris: [uri] });
  bad('path with /../', 'no dot segments', `spiffe://${td}/ns/demo/../kube-system/sa/a`);
  bad('path with /./', 'no dot segments', `spiffe://${td}/ns/./demo/sa/a`);
  bad('path with //', 'no empty segments', `spiffe://${td}/ns//demo/sa/a`);
  bad('trailing slash', 'no trailing slash', `spiffe://${td}/ns/demo/sa/a/`);
  bad('percent-encoded path', 'no percent-encoding', `spiffe://${td}/ns/de%6Do/sa/a`);
  bad('uppercase trust domain', 'the trust domain is lowercase', `spiffe://${td.toUpperCase()}/ns/demo/sa/a`);
  bad('a port in the ID', 'no port', `spiffe://${td}:8443/ns/demo/sa/a`);
  bad('userinfo in the ID', 'no userinfo', `spiffe://user@${td}/ns/demo/sa/a`);
  bad('a query', 'no query', `spiffe://${td}/ns/demo/sa/a?x=1`);
  bad('a fragment', 'no fragment', `spiffe://${td}/ns/demo/sa/a#x`);
  add('uppercase scheme', true, 'the scheme is case-insensitive (SPIFFE-ID §2.4)', { uris: [`SPIFFE://${td}/ns/demo/sa/a`] });
  bad('https scheme', 'the scheme is spiffe', `https://${td}/ns/demo/sa/a`);
  bad('trust domain only (no path)', 'a leaf ID has a path', `spiffe://${td}`);
  add('expired', false, 'the validity period is over', { notBefore: new Date(now - 2 * hour), notAfter: new Date(now - hour) });
  add('not yet valid', false, 'the validity period has not begun', { notBefore: new Date(now + hour), notAfter: new Date(now + 2 * hour) });
  add('signed by another root', false, 'the chain does not reach the mesh root', {}, o.foreignRoot);
  return out;
}
