// PKCS#10 certificate requests (RFC 2986): parse, check the key, verify the
// request's own signature. Only what the CA needs; nothing from the request
// but its public key and its requested SANs is ever used.
import type { KeyObject } from 'node:crypto';
import { DerError, Tag, bitString, decodeOid, derToPem, extension, oid, pemToDer, readChildren, readOne, readTlv, seq, tlv } from './der.js';
import { OID, SIGNATURE_DIGESTS } from './oids.js';
import { CaError } from './errors.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { createPublicKey, sign, verify } = process.getBuiltinModule('node:crypto');

export interface ParsedCsr {
  /** DER SubjectPublicKeyInfo, copied verbatim into the certificate. */
  spki: Buffer;
  publicKey: KeyObject;
  /** URI SANs the request asks for (usually one SPIFFE ID, or none). */
  uris: string[];
  /** Other SAN kinds requested (DNS, IP, email), as "dns:name" etc. */
  otherSans: string[];
}

/** The largest CSR accepted, in PEM characters; a P-256 CSR is about 400. */
export const MAX_CSR_PEM_LENGTH = 16 * 1024;

const bad = (detail: string): CaError => new CaError('malformed-csr', `malformed CSR: ${detail}`);

export function parseCsrPem(pem: string): ParsedCsr {
  if (typeof pem !== 'string' || pem.length === 0) throw bad('no CSR given; send a PEM "CERTIFICATE REQUEST" block');
  if (pem.length > MAX_CSR_PEM_LENGTH) throw bad(`the CSR is longer than ${MAX_CSR_PEM_LENGTH} characters`);
  let der: Buffer;
  try {
    der = pemToDer(pem, 'CERTIFICATE REQUEST');
  } catch (e) {
    throw bad((e as Error).message);
  }
  try {
    return parseCsrDer(der);
  } catch (e) {
    if (e instanceof DerError) throw bad(`not valid DER (${e.message})`);
    throw e;
  }
}

export function parseCsrDer(der: Buffer): ParsedCsr {
  const outer = readChildren(readOne(der, Tag.SEQUENCE, 'CertificationRequest').value);
  const [cri, sigAlg, sig] = outer;
  if (outer.length !== 3 || !cri || !sigAlg || !sig || cri.tag !== Tag.SEQUENCE || sigAlg.tag !== Tag.SEQUENCE || sig.tag !== Tag.BIT_STRING)
    throw bad('expected SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }');
  const criParts = readChildren(cri.value);
  const [version, , spki, attrs] = criParts;
  if (!version || version.tag !== Tag.INTEGER || version.value.length !== 1 || version.value[0] !== 0)
    throw bad('the request version must be 0 (v1)');
  if (!spki || spki.tag !== Tag.SEQUENCE) throw bad('missing subjectPublicKeyInfo');

  const publicKey = checkedPublicKey(spki.raw);

  const algOid = decodeOid(readChildren(sigAlg.value)[0]?.value ?? Buffer.alloc(0));
  const digest = SIGNATURE_DIGESTS[algOid];
  if (!digest) throw bad(`unsupported signature algorithm ${algOid}; sign the request with ECDSA or RSA and SHA-256/384/512`);
  if (sig.value[0] !== 0) throw bad('the signature BIT STRING has unused bits');
  if (!verify(digest, cri.raw, publicKey, sig.value.subarray(1)))
    throw new CaError('csr-signature', 'the CSR signature does not match its public key; sign the request with the key it carries');

  const uris: string[] = [];
  const otherSans: string[] = [];
  if (attrs && attrs.tag === 0xa0) {
    for (const attr of readChildren(attrs.value)) {
      const [type, values] = readChildren(attr.value);
      if (!type || decodeOid(type.value) !== OID.extensionRequest || !values) continue;
      for (const extSeq of readChildren(values.value)) {
        for (const ext of readChildren(extSeq.value)) {
          const parts = readChildren(ext.value);
          if (parts.length < 2 || decodeOid(parts[0]!.value) !== OID.subjectAltName) continue;
          const extnValue = parts[parts.length - 1]!;
          for (const gn of readChildren(readTlv(extnValue.value).value)) {
            const text = gn.value.toString('latin1');
            if (gn.tag === 0x86) uris.push(text);
            else if (gn.tag === 0x82) otherSans.push(`dns:${text}`);
            else if (gn.tag === 0x81) otherSans.push(`email:${text}`);
            else if (gn.tag === 0x87) otherSans.push(`ip:${[...gn.value].join('.')}`);
            else otherSans.push(`tag-0x${gn.tag.toString(16)}`);
          }
        }
      }
    }
  }
  return { spki: Buffer.from(spki.raw), publicKey, uris, otherSans };
}

const EC_CURVES: Readonly<Record<string, { crv: string; size: number }>> = {
  [OID.prime256v1]: { crv: 'P-256', size: 32 },
  [OID.secp384r1]: { crv: 'P-384', size: 48 },
};

/**
 * The CSR's key, checked. EC keys are imported from their coordinates (JWK):
 * OpenSSL 3 decodes that about twice as fast as DER SPKI, and this is on the
 * CA's per-request path.
 */
function checkedPublicKey(spki: Buffer): KeyObject {
  const [alg, bits] = readChildren(readTlv(spki).value);
  if (!alg || alg.tag !== Tag.SEQUENCE || !bits || bits.tag !== Tag.BIT_STRING) throw bad('malformed subjectPublicKeyInfo');
  const [algOid, params] = readChildren(alg.value);
  const keyType = decodeOid(algOid?.value ?? Buffer.alloc(0));
  if (keyType === OID.ecPublicKey) {
    const curveOid = params?.tag === Tag.OID ? decodeOid(params.value) : 'none';
    const curve = EC_CURVES[curveOid];
    if (!curve) throw new CaError('weak-key', `the CSR key uses EC curve ${curveOid}; use ECDSA P-256 or P-384`);
    const point = bits.value.subarray(1);
    if (bits.value[0] !== 0 || point.length !== 1 + 2 * curve.size || point[0] !== 0x04)
      throw bad('the EC public key is not an uncompressed point of its curve');
    try {
      return createPublicKey({
        key: { kty: 'EC', crv: curve.crv, x: point.subarray(1, 1 + curve.size).toString('base64url'), y: point.subarray(1 + curve.size).toString('base64url') },
        format: 'jwk',
      });
    } catch (e) {
      throw bad(`the EC public key is not on its curve (${(e as Error).message})`);
    }
  }
  if (keyType === OID.rsaEncryption) {
    let key: KeyObject;
    try {
      key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    } catch (e) {
      throw bad(`the RSA public key cannot be read (${(e as Error).message})`);
    }
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new CaError('weak-key', 'the CSR RSA key is shorter than 2048 bits');
    return key;
  }
  throw new CaError('weak-key', `the CSR key type ${keyType} is not accepted; use ECDSA P-256`);
}
/**
 * A CSR for `privateKey` (ECDSA P-256 or P-384) with an empty subject and, if
 * given, the SPIFFE ID as its one URI SAN. What a proxy sends to the CA.
 */
export function buildCsrPem(privateKey: KeyObject, spiffeId?: string): string {
  const publicKey = createPublicKey(privateKey);
  if (publicKey.asymmetricKeyType !== 'ec') throw new CaError('weak-key', 'CSRs are built for ECDSA keys only');
  const p384 = publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1';
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const attributes = spiffeId
    ? tlv(
        0xa0,
        seq(oid(OID.extensionRequest), tlv(Tag.SET, seq(extension(OID.subjectAltName, false, seq(tlv(0x86, Buffer.from(spiffeId, 'ascii'))))))),
      )
    : tlv(0xa0, Buffer.alloc(0));
  const cri = seq(tlv(Tag.INTEGER, Buffer.from([0])), seq(), spki, attributes);
  const algorithm = seq(oid(p384 ? OID.ecdsaWithSHA384 : OID.ecdsaWithSHA256));
  const signature = sign(p384 ? 'sha384' : 'sha256', cri, privateKey);
  return derToPem(seq(cri, algorithm, bitString(signature)), 'CERTIFICATE REQUEST');
}
