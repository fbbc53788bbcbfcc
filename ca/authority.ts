// Issuing X.509-SVIDs: pure and synchronous (no I/O, clock injected).
// The TBSCertificate is assembled from byte templates computed once per
// issuer and signed with node:crypto; see ARCHITECTURE.md for the figures.
import { X509Certificate, createHash, createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import {
  Tag,
  bitString,
  decodeOid,
  derToPem,
  extension,
  octets,
  oid,
  readChildren,
  readOne,
  readTlv,
  seq,
  splitPemCertificates,
  tlv,
  unsignedInteger,
  x509Time,
} from './der.js';
import { CaError } from './errors.js';
import { OID } from './oids.js';
import { parseCsrPem } from './csr.js';
import { parseSpiffeId, validateTrustDomain } from '../contract/spiffe.js';
import type { TrustBundle } from './trust-bundle.js';

export const DEFAULT_TTL_SECONDS = 3600;
export const MIN_TTL_SECONDS = 60;
export const MAX_TTL_SECONDS = 30 * 24 * 3600;
/** NotBefore is set this far in the past so peers with slow clocks accept a fresh certificate. */
export const CLOCK_SKEW_BACKDATE_SECONDS = 60;

export interface CaOptions {
  trustDomain: string;
  /** PEM of the certificate that signs (a root, or an intermediate). */
  issuerCertPem: string;
  /** PEM private key (PKCS#8 or SEC1) of the issuer. */
  issuerKeyPem: string;
  /** PEM of the certificates between the issuer and a root (the issuer excluded), if any. */
  intermediatesPem?: string;
  /** The trust bundle: every root that workloads accept. Must include the issuer's root. */
  trustBundle: TrustBundle;
  /** Default and maximum lifetime of workload certificates, until setTtlSeconds changes it. */
  ttlSeconds?: number;
  now?: () => Date;
}

export interface IssueRequest {
  /** The SPIFFE ID to certify; comes from the authenticator, never from the CSR. */
  spiffeId: string;
  ttlSeconds?: number;
  /** DNS names and IPs, for the control plane's own serving certificate only. */
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

export interface IssuedCertificate {
  spiffeId: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** The leaf certificate. */
  certificatePem: string;
  /** Leaf then intermediates: what a TLS endpoint presents. */
  certChainPem: string;
  /** The roots peers verify against. */
  trustBundlePem: string;
}

export function checkTtlSeconds(ttl: number, what = 'certificate TTL'): number {
  if (!Number.isFinite(ttl) || ttl < MIN_TTL_SECONDS || ttl > MAX_TTL_SECONDS)
    throw new CaError(
      'bad-ttl',
      `${what} of ${ttl}s is out of bounds; it must be between ${MIN_TTL_SECONDS}s and ${MAX_TTL_SECONDS / 86400} days`,
    );
  return Math.floor(ttl);
}

interface IssuerTemplate {
  subjectDer: Buffer;
  keyId: Buffer;
  signatureAlgorithm: Buffer;
  digest: string;
  notBefore: Date;
  notAfter: Date;
}

const V3 = tlv(0xa0, tlv(Tag.INTEGER, Buffer.from([2])));
const EMPTY_NAME = seq();
const BASIC_CONSTRAINTS_LEAF = extension(OID.basicConstraints, true, seq());
// KeyUsage BIT STRING: 7 unused bits, bit 0 (digitalSignature) set.
const KEY_USAGE_DIGITAL_SIGNATURE = extension(OID.keyUsage, true, tlv(Tag.BIT_STRING, Buffer.from([0x07, 0x80])));
const EXT_KEY_USAGE_SERVER_CLIENT = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));

/** What signs and what is trusted: swapped as one by `replaceMaterial` (live root rotation). */
export type CaMaterialOptions = Pick<CaOptions, 'issuerCertPem' | 'issuerKeyPem' | 'intermediatesPem' | 'trustBundle'>;

interface Signer {
  trustBundle: TrustBundle;
  issuer: X509Certificate;
  key: KeyObject;
  template: IssuerTemplate;
  /** What follows the leaf in a chain: empty when a root signs. */
  chainTailPem: string;
  /** The root of the bundle the issuer chains to. */
  root: X509Certificate;
}

/** Checks issuing material against its bundle; throws CaError saying what is wrong. */
function signerOf(opts: CaMaterialOptions): Signer {
  const issuer = new X509Certificate(opts.issuerCertPem);
  const key = createPrivateKey(opts.issuerKeyPem);
  if (!issuer.ca) throw new CaError('internal', 'the issuing certificate is not a CA (basicConstraints CA:TRUE is missing)');
  if (!issuer.checkPrivateKey(key)) throw new CaError('internal', 'the issuing key does not belong to the issuing certificate');
  const intermediatesPem = opts.intermediatesPem ?? '';
  const chain = [issuer, ...splitPemCertificates(intermediatesPem).map((p) => new X509Certificate(p))];
  const root = opts.trustBundle.anchorOf(chain);
  if (!root) throw new CaError('internal', 'the issuing certificate does not chain to any root in the trust bundle');
  const selfSigned = issuer.issuer === issuer.subject && issuer.verify(issuer.publicKey);
  return { trustBundle: opts.trustBundle, issuer, key, template: issuerTemplate(issuer, key, chain), chainTailPem: selfSigned ? '' : issuer.toString() + intermediatesPem, root };
}

export class CertificateAuthority {
  readonly trustDomain: string;
  /** The lifetime given at construction (the control plane's --cert-ttl): in force when no mesh setting overrides it. */
  readonly defaultTtlSeconds: number;
  private signer: Signer;
  private readonly materialListeners = new Set<() => void>();
  private serials = Buffer.alloc(0);
  private readonly now: () => Date;
  private ttl: number;

  constructor(opts: CaOptions) {
    validateTrustDomain(opts.trustDomain);
    this.trustDomain = opts.trustDomain;
    this.defaultTtlSeconds = checkTtlSeconds(opts.ttlSeconds ?? DEFAULT_TTL_SECONDS);
    this.ttl = this.defaultTtlSeconds;
    this.now = opts.now ?? (() => new Date());
    this.signer = signerOf(opts);
  }

  /** Every root that workloads accept now. */
  get trustBundle(): TrustBundle {
    return this.signer.trustBundle;
  }

  /** The certificate that signs now. */
  get issuer(): X509Certificate {
    return this.signer.issuer;
  }

  /** The root of the trust bundle that the certificates issued now chain to. */
  get issuerRoot(): X509Certificate {
    return this.signer.root;
  }

  /**
   * Swaps the issuing material and the trust bundle at once (root rotation):
   * certificates issued from now on chain to the new issuer. Material that
   * does not hold together (a key of another certificate, an issuer outside
   * the bundle) throws CaError and changes nothing. Listeners are told after.
   */
  replaceMaterial(material: CaMaterialOptions): void {
    this.signer = signerOf(material);
    for (const l of this.materialListeners) l();
  }

  /** Called after every replaceMaterial; returns an unsubscribe function. */
  onMaterialChange(listener: () => void): () => void {
    this.materialListeners.add(listener);
    return () => this.materialListeners.delete(listener);
  }

  /** Default and maximum lifetime of the certificates issued from now on. */
  get ttlSeconds(): number {
    return this.ttl;
  }

  /**
   * Changes the lifetime of the certificates issued from now on (those already
   * issued keep theirs); undefined returns to `defaultTtlSeconds`. A value out
   * of bounds throws CaError bad-ttl and changes nothing. NotAfter still never
   * passes the issuer's.
   */
  setTtlSeconds(seconds: number | undefined): number {
    this.ttl = seconds === undefined ? this.defaultTtlSeconds : checkTtlSeconds(seconds);
    return this.ttl;
  }

  /** Verifies a workload CSR and certifies `spiffeId` for its key. */
  signWorkloadCsr(csrPem: string, spiffeId: string, ttlSeconds?: number): IssuedCertificate {
    const csr = parseCsrPem(csrPem);
    if (csr.uris.length > 1) throw new CaError('san-not-allowed', `the CSR asks for ${csr.uris.length} URI SANs; a workload certificate carries exactly one`);
    if (csr.uris.length === 1 && csr.uris[0] !== spiffeId)
      throw new CaError('identity-mismatch', `the CSR asks for ${csr.uris[0]}, but the caller is authenticated as ${spiffeId}`);
    if (csr.otherSans.length > 0)
      throw new CaError('san-not-allowed', `the CSR asks for ${csr.otherSans.join(', ')}; workload certificates carry only the SPIFFE ID`);
    return this.issue(csr.spki, ttlSeconds === undefined ? { spiffeId } : { spiffeId, ttlSeconds });
  }

  /** Certifies the public key `spkiDer` (DER SubjectPublicKeyInfo). */
  issue(spkiDer: Buffer, req: IssueRequest): IssuedCertificate {
    const id = parseSpiffeId(req.spiffeId);
    if (id.trustDomain !== this.trustDomain)
      throw new CaError('identity-mismatch', `${req.spiffeId} is outside this CA's trust domain ${this.trustDomain}`);
    const ttl = req.ttlSeconds === undefined ? this.ttlSeconds : checkTtlSeconds(req.ttlSeconds, 'requested TTL');
    if (ttl > this.ttlSeconds) throw new CaError('bad-ttl', `requested TTL ${ttl}s is longer than this CA's maximum of ${this.ttlSeconds}s`);

    const signer = this.signer;
    const t = signer.template;
    const nowMs = this.now().getTime();
    if (nowMs < t.notBefore.getTime()) throw new CaError('issuer-not-valid', `the issuing certificate is not valid before ${t.notBefore.toISOString()}`);
    if (nowMs >= t.notAfter.getTime()) throw new CaError('issuer-not-valid', `the issuing certificate expired at ${t.notAfter.toISOString()}`);
    const notBefore = new Date(Math.max(nowMs - CLOCK_SKEW_BACKDATE_SECONDS * 1000, t.notBefore.getTime()));
    const notAfter = new Date(Math.floor(Math.min(nowMs + ttl * 1000, t.notAfter.getTime()) / 1000) * 1000);

    const serial = this.nextSerial();

    const sans: Buffer[] = [tlv(0x86, Buffer.from(req.spiffeId, 'ascii'))];
    for (const name of req.dnsNames ?? []) sans.push(tlv(0x82, Buffer.from(name, 'ascii')));
    for (const ip of req.ipAddresses ?? []) sans.push(tlv(0x87, ipBytes(ip)));

    const extensions = seq(
      BASIC_CONSTRAINTS_LEAF,
      KEY_USAGE_DIGITAL_SIGNATURE,
      EXT_KEY_USAGE_SERVER_CLIENT,
      extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(spkiDer))),
      extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, t.keyId))),
      // The subject is empty, so the SAN extension must be critical (RFC 5280 §4.2.1.6).
      extension(OID.subjectAltName, true, seq(...sans)),
    );
    const tbs = seq(
      V3,
      unsignedInteger(serial),
      t.signatureAlgorithm,
      t.subjectDer,
      seq(x509Time(notBefore), x509Time(notAfter)),
      EMPTY_NAME,
      spkiDer,
      tlv(0xa3, extensions),
    );
    const signature = sign(t.digest, tbs, signer.key);
    const certificatePem = derToPem(seq(tbs, t.signatureAlgorithm, bitString(signature)), 'CERTIFICATE');
    return {
      spiffeId: req.spiffeId,
      serialNumber: serial.toString('hex'),
      notBefore,
      notAfter,
      certificatePem,
      certChainPem: certificatePem + signer.chainTailPem,
      trustBundlePem: signer.trustBundle.toPem(),
    };
  }

  /** 16 random bytes, the top bit cleared (a positive INTEGER) and the next set (never shorter than 127 bits). */
  private nextSerial(): Buffer {
    if (this.serials.length < 16) this.serials = randomBytes(16 * 256);
    const serial = Buffer.from(this.serials.subarray(0, 16));
    this.serials = this.serials.subarray(16);
    serial[0] = (serial[0]! & 0x7f) | 0x40;
    return serial;
  }
}

function issuerTemplate(issuer: X509Certificate, key: KeyObject, chain: X509Certificate[]): IssuerTemplate {
  const tbs = readChildren(readChildren(readOne(issuer.raw, Tag.SEQUENCE, 'issuer certificate').value)[0]!.value);
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, spki, ...extensions
  const subject = tbs[5]!;
  const spki = tbs[6]!;
  let keyId = keyIdentifier(spki.raw);
  const exts = tbs.find((t) => t.tag === 0xa3);
  if (exts) {
    for (const ext of readChildren(readTlv(exts.value).value)) {
      const parts = readChildren(ext.value);
      if (decodeOid(parts[0]!.value) === OID.subjectKeyIdentifier) keyId = Buffer.from(readTlv(parts[parts.length - 1]!.value).value);
    }
  }
  let signatureAlgorithm: Buffer;
  let digest: string;
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    digest = curve === 'secp384r1' ? 'sha384' : 'sha256';
    signatureAlgorithm = seq(oid(digest === 'sha384' ? OID.ecdsaWithSHA384 : OID.ecdsaWithSHA256));
  } else if (key.asymmetricKeyType === 'rsa') {
    digest = 'sha256';
    signatureAlgorithm = seq(oid(OID.sha256WithRSAEncryption), tlv(Tag.NULL));
  } else {
    throw new CaError('internal', `issuer keys of type ${String(key.asymmetricKeyType)} are not supported; use ECDSA P-256`);
  }
  const times = chain.map((c) => [new Date(c.validFrom).getTime(), new Date(c.validTo).getTime()] as const);
  return {
    subjectDer: Buffer.from(subject.raw),
    keyId,
    signatureAlgorithm,
    digest,
    notBefore: new Date(Math.max(...times.map((t) => t[0]))),
    notAfter: new Date(Math.min(...times.map((t) => t[1]))),
  };
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes. */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const parts = readChildren(readTlv(spkiDer).value);
  const bits = parts[1];
  if (!bits || bits.tag !== Tag.BIT_STRING) throw new CaError('malformed-csr', 'malformed CSR: the public key is not a BIT STRING');
  return createHash('sha1').update(bits.value.subarray(1)).digest();
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (isIPv6(ip)) {
    const [head = '', tail = ''] = ip.split('::');
    const groups = (s: string): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
    const h = groups(head);
    const t = ip.includes('::') ? groups(tail) : [];
    const all = ip.includes('::') ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
    const out = Buffer.alloc(16);
    all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
    return out;
  }
  throw new CaError('bad-request', `IP SAN ${ip} is not an IP address`);
}

