// A serving certificate for the webhook from the mesh's own CA, valid for
// 127.0.0.1 (the tests and the benchmark call it there; so does the test API server).
import { generateKeyPairSync } from 'node:crypto';
import { CertificateAuthority } from '../../ca/authority.js';
import { createRootCa } from '../../ca/root.js';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import { TrustBundle } from '../../ca/trust-bundle.js';

export interface ServingMaterial {
  /** PEM of the root: the caBundle of the webhook registration, the `ca` of a client. */
  ca: string;
  key: string;
  cert: string;
}

export async function webhookServingCertificate(trustDomain = 'cluster.local'): Promise<ServingMaterial> {
  const root = await createRootCa(trustDomain);
  const authority = new CertificateAuthority({ trustDomain, issuerCertPem: root.certPem, issuerKeyPem: root.keyPem, trustBundle: new TrustBundle(root.certPem) });
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = authority.issue(publicKey.export({ type: 'spki', format: 'der' }), {
    spiffeId: workloadSpiffeId(trustDomain, 'tsmesh-system', 'tsmesh-control-plane'),
    dnsNames: ['tsmesh-control-plane.tsmesh-system.svc', 'localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  return { ca: root.certPem, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem };
}
