// The CA material of an install: Secret tsmesh-ca in tsmesh-system, one key
// per file of the CA folder layout (ca/material.ts, CA_FILES), mounted by the
// control plane at --ca-dir. `tsmesh install` brings it from --ca-dir, or
// makes a new root when none is brought.
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { CertificateAuthority } from '../ca/authority.js';
import { CA_FILES, CA_FILE_NAMES, parseCaFiles, readCaFiles, type CaFiles } from '../ca/material.js';
import { createRootCa, DEFAULT_ROOT_VALIDITY_DAYS } from '../ca/root.js';
import { splitPemCertificates } from '../ca/der.js';
import { CA_SECRET_NAME, CONTROL_PLANE_NAME, MESH_NAMESPACE } from '../contract/names.js';
import type { KubeObject } from './kube.js';

export { CA_FILE_NAMES, type CaFileName, type CaFiles } from '../ca/material.js';

export interface CaMaterial {
  files: CaFiles;
  /** Made here rather than brought by the user. */
  generated: boolean;
}

/** A new self-signed root for the trust domain (root-cert.pem, root-key.pem). */
export async function generateCa(trustDomain: string, validityDays = DEFAULT_ROOT_VALIDITY_DAYS, now = new Date()): Promise<CaMaterial> {
  const root = await createRootCa(trustDomain, validityDays, now);
  return { files: { [CA_FILES.rootCert]: root.certPem, [CA_FILES.rootKey]: root.keyPem }, generated: true };
}

/** Checks CA files the way the control plane loads them (a key that fits, a chain to a root; the same for a rotation's material to come) and says what is wrong. */
export async function checkCaFiles(files: CaFiles, trustDomain: string): Promise<void> {
  const material = parseCaFiles(files, 'the CA material');
  for (const m of [material.current, ...(material.next ? [material.next] : [])]) new CertificateAuthority({ trustDomain, ...m });
  return Promise.resolve();
}

/** Reads a CA folder (the files of CA_FILES that exist) and checks it. */
export async function readCaDir(dir: string, trustDomain: string): Promise<CaMaterial> {
  if (!existsSync(join(dir, CA_FILES.rootCert))) throw new Error(`${join(dir, CA_FILES.rootCert)} does not exist; --ca-dir needs root-cert.pem with root-key.pem, or with ca-cert.pem and ca-key.pem (make one with "tsmesh ca init --out ${dir}")`);
  const files = await readCaFiles(dir);
  try {
    await checkCaFiles(files, trustDomain);
  } catch (e) {
    throw new Error(`--ca-dir ${dir}: ${(e as Error).message}`, { cause: e });
  }
  return { files, generated: false };
}

/** Secret tsmesh-ca holding the files, base64 as `kubectl create secret generic --from-file` writes them. */
export function caSecret(files: CaFiles): KubeObject {
  const data: Record<string, string> = {};
  for (const name of CA_FILE_NAMES) {
    const pem = files[name];
    if (pem !== undefined) data[name] = Buffer.from(pem).toString('base64');
  }
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: CA_SECRET_NAME,
      namespace: MESH_NAMESPACE,
      labels: { 'app.kubernetes.io/name': CONTROL_PLANE_NAME, 'app.kubernetes.io/part-of': 'tsmesh' },
    },
    type: 'Opaque',
    data,
  };
}

/** The files a Secret holds (data is base64; unknown keys are left out). */
export function caFilesFromSecret(secret: { data?: Record<string, string> | undefined }): CaFiles {
  const files: CaFiles = {};
  for (const name of CA_FILE_NAMES) {
    const b64 = secret.data?.[name];
    if (b64 !== undefined) files[name] = Buffer.from(b64, 'base64').toString('utf8');
  }
  return files;
}

/** The roots of a root-cert.pem, parsed; entries that do not parse are reported by index. */
export function parseRoots(pem: string): { certs: X509Certificate[]; errors: string[] } {
  const certs: X509Certificate[] = [];
  const errors: string[] = [];
  splitPemCertificates(pem).forEach((p, i) => {
    try {
      certs.push(new X509Certificate(p));
    } catch (e) {
      errors.push(`certificate ${i + 1}: ${(e as Error).message}`);
    }
  });
  return { certs, errors };
}

/** Roots of `before` that `after` no longer holds: certificates they signed would stop being trusted. */
export function droppedRoots(before: string, after: string): X509Certificate[] {
  const kept = new Set(parseRoots(after).certs.map((c) => c.fingerprint256));
  return parseRoots(before).certs.filter((c) => !kept.has(c.fingerprint256));
}
