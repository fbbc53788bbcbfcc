// Creating CA certificates (roots and intermediates) with @peculiar/x509 on
// WebCrypto. Rare and off the hot path, so the general library is the right tool.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { trustDomainId, validateTrustDomain } from '../contract/spiffe.js';

x509.cryptoProvider.set(webcrypto as never);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
export const DEFAULT_ROOT_VALIDITY_DAYS = 3650;
export const DEFAULT_INTERMEDIATE_VALIDITY_DAYS = 365;

export interface CaKeyPair {
  certPem: string;
  keyPem: string;
}

function serial(): string {
  const b = new Uint8Array(16);
  webcrypto.getRandomValues(b);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return Buffer.from(b).toString('hex');
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n';
}

function caExtensions(trustDomain: string, pathLength?: number): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(trustDomain) }], false),
  ];
}

/** A self-signed root: CA:true, keyCertSign + cRLSign (critical), URI SAN spiffe://<trust-domain>. */
export async function createRootCa(trustDomain: string, validityDays = DEFAULT_ROOT_VALIDITY_DAYS, now = new Date()): Promise<CaKeyPair> {
  validateTrustDomain(trustDomain);
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `O=tsmesh, CN=tsmesh root CA ${trustDomain}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validityDays * 86_400_000),
    keys: keys as never,
    signingAlgorithm: EC_P256,
    extensions: [...caExtensions(trustDomain), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never)],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}

/** An intermediate signed by `parent` (pathLen 0: it signs only workloads). */
export async function createIntermediateCa(
  parent: CaKeyPair,
  trustDomain: string,
  validityDays = DEFAULT_INTERMEDIATE_VALIDITY_DAYS,
  now = new Date(),
): Promise<CaKeyPair> {
  validateTrustDomain(trustDomain);
  const parentCert = new x509.X509Certificate(parent.certPem);
  const parentKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(parent.keyPem), EC_P256, false, ['sign']);
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `O=tsmesh, CN=tsmesh intermediate CA ${trustDomain}`,
    issuer: parentCert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(Math.min(now.getTime() + validityDays * 86_400_000, parentCert.notAfter.getTime())),
    publicKey: keys.publicKey as never,
    signingKey: parentKey as never,
    signingAlgorithm: EC_P256,
    extensions: [
      ...caExtensions(trustDomain, 0),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      await x509.AuthorityKeyIdentifierExtension.create(parentCert),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}
