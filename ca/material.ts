// CA material on disk, in the file layout Istio's plug-in CA uses, so
// operators can bring certificates they already have:
//   root-cert.pem   the trust bundle: one or more roots (several during rotation)
//   root-key.pem    the root's key, when a root signs workload certificates
//   ca-cert.pem     an intermediate that signs instead (with ca-key.pem)
//   cert-chain.pem  certificates between ca-cert.pem and the root, if any
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { CertificateAuthority } from './authority.js';
import { CaError } from './errors.js';
import { TrustBundle } from './trust-bundle.js';
import type { CaKeyPair } from './root.js';

export const CA_FILES = {
  rootCert: 'root-cert.pem',
  rootKey: 'root-key.pem',
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
} as const;

export interface LoadCaOptions {
  trustDomain: string;
  ttlSeconds?: number;
  now?: () => Date;
}

async function read(dir: string, name: string): Promise<string> {
  try {
    return await readFile(join(dir, name), 'utf8');
  } catch (e) {
    throw new CaError('internal', `cannot read ${join(dir, name)}: ${(e as Error).message}; create one with "tsmesh ca init --out ${dir}"`);
  }
}

/** Loads a root CA, or a root plus an intermediate, from `dir`. */
export async function loadCaFromDir(dir: string, opts: LoadCaOptions): Promise<CertificateAuthority> {
  const trustBundle = new TrustBundle(await read(dir, CA_FILES.rootCert));
  const common = { trustDomain: opts.trustDomain, trustBundle, ...(opts.ttlSeconds ? { ttlSeconds: opts.ttlSeconds } : {}), ...(opts.now ? { now: opts.now } : {}) };
  if (existsSync(join(dir, CA_FILES.caCert))) {
    return new CertificateAuthority({
      ...common,
      issuerCertPem: await read(dir, CA_FILES.caCert),
      issuerKeyPem: await read(dir, CA_FILES.caKey),
      ...(existsSync(join(dir, CA_FILES.certChain)) ? { intermediatesPem: await read(dir, CA_FILES.certChain) } : {}),
    });
  }
  const keyPem = await read(dir, CA_FILES.rootKey);
  const key = createPrivateKey(keyPem);
  const root = trustBundle.roots.find((r) => r.checkPrivateKey(key));
  if (!root) throw new CaError('internal', `${join(dir, CA_FILES.rootKey)} belongs to none of the roots in ${CA_FILES.rootCert}`);
  return new CertificateAuthority({ ...common, issuerCertPem: root.toString(), issuerKeyPem: keyPem });
}

/** Writes a root's certificate and key (key mode 0600); refuses to overwrite an existing root. */
export async function writeRootCa(dir: string, root: CaKeyPair): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of [CA_FILES.rootCert, CA_FILES.rootKey]) {
    if (existsSync(join(dir, f))) throw new CaError('internal', `${join(dir, f)} already exists; remove it or choose another --out`);
  }
  await writeFile(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
  await writeFile(join(dir, CA_FILES.rootCert), root.certPem);
}

export function describeCertificate(pem: string): string {
  const c = new X509Certificate(pem);
  return `${c.subject.replace(/\n/g, ', ') || '(empty subject)'}; SAN ${c.subjectAltName ?? '-'}; valid ${c.validFrom} .. ${c.validTo}`;
}
