// CA material on disk, in the file layout Istio's plug-in CA uses, so
// operators can bring certificates they already have:
//   root-cert.pem   the trust bundle: one or more roots (several during rotation)
//   root-key.pem    the root's key, when a root signs workload certificates
//   ca-cert.pem     an intermediate that signs instead (with ca-key.pem)
//   cert-chain.pem  certificates between ca-cert.pem and the root, if any
// During a root rotation (ca/rotation.ts) the issuing material to come sits
// beside it under the same names prefixed `next-`, and rotation.json says
// when the rotation began and how long both roots are trusted before the
// new one signs. In Kubernetes the folder is the mounted Secret tsmesh-ca:
// kubelet swaps a `..data` symlink, so the files are read through it, all
// of one generation.
import { existsSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { CertificateAuthority, type CaMaterialOptions } from './authority.js';
import { splitPemCertificates } from './der.js';
import { CaError } from './errors.js';
import { TrustBundle } from './trust-bundle.js';
import type { CaKeyPair } from './root.js';

export const CA_FILES = {
  rootCert: 'root-cert.pem',
  rootKey: 'root-key.pem',
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
  nextRootKey: 'next-root-key.pem',
  nextCaCert: 'next-ca-cert.pem',
  nextCaKey: 'next-ca-key.pem',
  nextCertChain: 'next-cert-chain.pem',
  rotation: 'rotation.json',
} as const;

export type CaFileName = (typeof CA_FILES)[keyof typeof CA_FILES];
export const CA_FILE_NAMES: readonly CaFileName[] = Object.values(CA_FILES);
/** The files of a CA folder (or the keys of Secret tsmesh-ca), by name. */
export type CaFiles = Partial<Record<CaFileName, string>>;
/** The prefix of the issuing material to come during a rotation. */
export const NEXT_PREFIX = 'next-';

/** What rotation.json holds. */
export interface RotationRecord {
  /** When both roots began to be trusted (ISO 8601). */
  startedAt: string;
  /** Both roots are trusted at least this long before the new one signs. */
  overlapSeconds: number;
}

/** A CA folder read and checked: what signs now, what will sign, and what is trusted. */
export interface CaDirMaterial {
  files: CaFiles;
  trustBundle: TrustBundle;
  current: CaMaterialOptions;
  next?: CaMaterialOptions;
  rotation?: RotationRecord;
  /** SHA-256 over the files, to tell a change from a rewrite of the same content. */
  digest: string;
}

export interface LoadCaOptions {
  trustDomain: string;
  ttlSeconds?: number;
  now?: () => Date;
}

/**
 * Reads the CA files of `dir` that exist, all of one generation: through
 * kubelet's `..data` link when there is one, else read again until two reads
 * agree (a writer that replaces files one by one is not read half-way).
 */
export async function readCaFiles(dir: string): Promise<CaFiles> {
  let files = await readCaFilesOnce(dir);
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const again = await readCaFilesOnce(dir);
    if (CA_FILE_NAMES.every((n) => again[n] === files[n])) return files;
    files = again;
  }
  throw new CaError('internal', `the files of ${dir} kept changing while they were read; read again later`);
}

async function readCaFilesOnce(dir: string): Promise<CaFiles> {
  let base = dir;
  try {
    base = join(dir, readlinkSync(join(dir, '..data')));
  } catch {
    // Not a projected volume: the files are in dir itself.
  }
  const files: CaFiles = {};
  for (const name of CA_FILE_NAMES) {
    try {
      files[name] = await readFile(join(base, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CaError('internal', `cannot read ${join(dir, name)}: ${(e as Error).message}`);
    }
  }
  return files;
}

/** The issuing material under `prefix` ('' now, NEXT_PREFIX to come), or undefined when there is none. */
function issuingMaterial(files: CaFiles, prefix: '' | typeof NEXT_PREFIX, trustBundle: TrustBundle, where: string): CaMaterialOptions | undefined {
  const file = (name: string): string | undefined => files[(prefix + name) as CaFileName];
  const caCert = file(CA_FILES.caCert);
  if (caCert !== undefined) {
    const key = file(CA_FILES.caKey);
    if (key === undefined) throw new CaError('internal', `${where}: ${prefix}${CA_FILES.caCert} is there without ${prefix}${CA_FILES.caKey}; bring the intermediate's key too`);
    const chain = file(CA_FILES.certChain);
    return { issuerCertPem: caCert, issuerKeyPem: key, trustBundle, ...(chain !== undefined ? { intermediatesPem: chain } : {}) };
  }
  const keyPem = file(CA_FILES.rootKey);
  if (keyPem === undefined) return undefined;
  const key = createPrivateKey(keyPem);
  const root = trustBundle.roots.find((r) => r.checkPrivateKey(key));
  if (!root) throw new CaError('internal', `${where}: ${prefix}${CA_FILES.rootKey} belongs to none of the roots in ${CA_FILES.rootCert}`);
  return { issuerCertPem: root.toString(), issuerKeyPem: keyPem, trustBundle };
}

/**
 * Checks CA files as the control plane takes them: a bundle of CA
 * certificates, issuing material whose key fits and which chains to a root of
 * the bundle, the same for the material to come. Throws CaError saying what is wrong.
 */
export function parseCaFiles(files: CaFiles, where: string): CaDirMaterial {
  const bundlePem = files[CA_FILES.rootCert];
  if (bundlePem === undefined) throw new CaError('internal', `${where}: ${CA_FILES.rootCert} is missing; create one with "tsmesh ca init --out DIR"`);
  const trustBundle = new TrustBundle(bundlePem);
  const current = issuingMaterial(files, '', trustBundle, where);
  if (!current) throw new CaError('internal', `${where}: neither ${CA_FILES.rootKey} nor ${CA_FILES.caCert} is there; the CA needs one to sign with`);
  const next = issuingMaterial(files, NEXT_PREFIX, trustBundle, where);
  let rotation: RotationRecord | undefined;
  const record = files[CA_FILES.rotation];
  if (record !== undefined) {
    let r: Partial<RotationRecord>;
    try {
      r = JSON.parse(record) as Partial<RotationRecord>;
    } catch (e) {
      throw new CaError('internal', `${where}: ${CA_FILES.rotation} is not JSON (${(e as Error).message}); "tsmesh ca rotate start" writes it`);
    }
    if (typeof r.startedAt !== 'string' || Number.isNaN(Date.parse(r.startedAt)) || typeof r.overlapSeconds !== 'number' || !(r.overlapSeconds >= 0))
      throw new CaError('internal', `${where}: ${CA_FILES.rotation} needs startedAt (ISO time) and overlapSeconds (>= 0)`);
    rotation = { startedAt: r.startedAt, overlapSeconds: r.overlapSeconds };
  }
  const digest = createHash('sha256');
  for (const name of CA_FILE_NAMES) digest.update(`${name}\0${files[name] ?? '\u0001'}\0`);
  return { files, trustBundle, current, ...(next ? { next } : {}), ...(rotation ? { rotation } : {}), digest: digest.digest('hex') };
}

/** The root of the bundle that `m`'s issuer chains to (its SHA-256 fingerprint). */
export function issuingRoot(m: CaMaterialOptions): string {
  const chain = [m.issuerCertPem, ...splitPemCertificates(m.intermediatesPem ?? '')].map((p) => new X509Certificate(p));
  const root = m.trustBundle.anchorOf(chain);
  if (!root) throw new CaError('internal', 'the issuing certificate does not chain to any root in the trust bundle');
  return root.fingerprint256;
}

/** Reads and checks the CA folder `dir` (see parseCaFiles). */
export async function readCaMaterial(dir: string): Promise<CaDirMaterial> {
  return parseCaFiles(await readCaFiles(dir), dir);
}

/** Loads a root CA, or a root plus an intermediate, from `dir`; during a rotation, the material that signs now. */
export async function loadCaFromDir(dir: string, opts: LoadCaOptions): Promise<CertificateAuthority> {
  const material = await readCaMaterial(dir);
  return new CertificateAuthority({
    trustDomain: opts.trustDomain,
    ...material.current,
    ...(opts.ttlSeconds ? { ttlSeconds: opts.ttlSeconds } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
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
