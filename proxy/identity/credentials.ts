// From a CA response to the credentials the data path uses, checked before
// anything serves with them; and the node:tls options they make.
import type { KeyObject } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import { splitPemCertificates } from '../../ca/der.js';
import type { CertificateResponse } from '../../ca/server.js';
import { TrustBundle } from '../../ca/trust-bundle.js';
import { IdentityError } from './errors.js';
import type { WorkloadCredentials } from './types.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { X509Certificate } = process.getBuiltinModule('node:crypto');
type X509Certificate = InstanceType<typeof X509Certificate>;

const bad = (detail: string, cause?: unknown): IdentityError =>
  new IdentityError('bad-response', `the CA's certificate response is unusable: ${detail}`, {}, cause === undefined ? undefined : { cause });

/** Reads the JSON body of a 200 answer; throws `bad-response` naming the first missing field. */
export function parseCertificateResponse(body: unknown): CertificateResponse {
  if (body === null || typeof body !== 'object') throw bad('the body is not a JSON object');
  const b = body as Record<string, unknown>;
  for (const field of ['spiffeId', 'serialNumber', 'certChain', 'trustBundle', 'notBefore', 'expiresAt'] as const)
    if (typeof b[field] !== 'string' || b[field] === '') throw bad(`field "${field}" is missing or not a string`);
  return b as unknown as CertificateResponse;
}

/**
 * Checks that the leaf certifies `key` with exactly the expected SPIFFE ID
 * (when one is expected), and that the chain ends in a root of the returned
 * bundle; then packs them as WorkloadCredentials. The chain is checked at the
 * leaf's notBefore, not by this machine's clock: a skewed clock is reported
 * by the caller, and must not make every certificate look forged.
 */
export function credentialsFromResponse(res: CertificateResponse, key: KeyObject, expectedSpiffeId?: string): WorkloadCredentials {
  let chain: X509Certificate[];
  let bundle: TrustBundle;
  try {
    chain = splitPemCertificates(res.certChain).map((pem) => new X509Certificate(pem));
  } catch (e) {
    throw bad(`certChain is not PEM certificates (${(e as Error).message})`, e);
  }
  try {
    bundle = new TrustBundle(res.trustBundle);
  } catch (e) {
    throw bad(`trustBundle is not PEM CA certificates (${(e as Error).message})`, e);
  }
  const leaf = chain[0];
  if (!leaf) throw bad('certChain holds no certificate');
  if (!leaf.checkPrivateKey(key)) throw bad('the certificate is not for the key in the request');
  const uris = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:'));
  if (uris.length !== 1 || uris[0] !== `URI:${res.spiffeId}`)
    throw bad(`the certificate's URI SANs (${uris.join(', ') || 'none'}) are not exactly spiffeId ${res.spiffeId}`);
  if (expectedSpiffeId !== undefined && res.spiffeId !== expectedSpiffeId)
    throw bad(`the CA certified ${res.spiffeId}, but this proxy runs as ${expectedSpiffeId}; check the pod's service account and trust domain`);
  if (!bundle.anchors(chain, new Date(leaf.validFrom)))
    throw bad('the certificate chain does not lead to a root of the returned trust bundle');
  return {
    spiffeId: res.spiffeId,
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    certChainPem: chain.map((c) => c.toString()).join(''),
    trustBundlePem: bundle.toPem(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}

/** What tls.createSecureContext and server.setSecureContext take for these credentials. */
export function secureContextOptions(creds: WorkloadCredentials): Required<Pick<SecureContextOptions, 'key' | 'cert' | 'ca'>> {
  return { key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem };
}
