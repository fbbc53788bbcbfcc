// Shared by the CA's tests: real roots, keys and CSRs, and a second X.509
// implementation (openssl) to read what the CA issued.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../authority.js';
import { createRootCa, type CaKeyPair } from '../root.js';
import { TrustBundle } from '../trust-bundle.js';

export const TD = 'cluster.local';
export const WEB = 'spiffe://cluster.local/ns/default/sa/web';
export const API = 'spiffe://cluster.local/ns/payments/sa/api';

export function newKey(curve = 'P-256'): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: curve }).privateKey;
}

export function caFromRoot(root: CaKeyPair, extra: Partial<ConstructorParameters<typeof CertificateAuthority>[0]> = {}): CertificateAuthority {
  return new CertificateAuthority({
    trustDomain: TD,
    issuerCertPem: root.certPem,
    issuerKeyPem: root.keyPem,
    trustBundle: new TrustBundle(root.certPem),
    ...extra,
  });
}

export async function newRootCa(): Promise<{ root: CaKeyPair; ca: CertificateAuthority }> {
  const root = await createRootCa(TD);
  return { root, ca: caFromRoot(root) };
}

/** Runs openssl with PEM inputs written to a temporary folder; returns stdout and stderr, throws on a non-zero exit. */
export function openssl(args: (dir: string) => string[], files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-test-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const r = spawnSync('openssl', args(dir), { encoding: 'utf8' });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`openssl ${args(dir).join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout + r.stderr;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function opensslText(certPem: string): string {
  return openssl((d) => ['x509', '-in', join(d, 'c.pem'), '-noout', '-text'], { 'c.pem': certPem });
}

/** `openssl verify`: returns its output, throws when verification fails. */
export function opensslVerify(leafPem: string, rootsPem: string, intermediatesPem = ''): string {
  return openssl(
    (d) => ['verify', '-CAfile', join(d, 'roots.pem'), ...(intermediatesPem ? ['-untrusted', join(d, 'chain.pem')] : []), join(d, 'leaf.pem')],
    { 'leaf.pem': leafPem, 'roots.pem': rootsPem, 'chain.pem': intermediatesPem || '\n' },
  );
}
