// The steps of a root rotation as changes of the CA files (ca/material.ts),
// the same for a folder (--ca-dir) and for Secret tsmesh-ca:
//   start   a new root beside the old one in root-cert.pem; the material to
//           come under next-* (the new root's key when a root signs, else a
//           new intermediate signed by the new root, whose key then stays
//           with the operator); rotation.json with the time and the overlap.
//   finish  the material to come becomes the material in force and the old
//           root leaves root-cert.pem; next-* and rotation.json go.
// The layout in force is kept: a mesh whose root signs keeps a root that
// signs, one with an intermediate gets a new intermediate.
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CaError } from './errors.js';
import { CA_FILES, NEXT_PREFIX, issuingRoot, parseCaFiles, type CaFileName, type CaFiles, type RotationRecord } from './material.js';
import { createIntermediateCa, createRootCa, type CaKeyPair } from './root.js';

/** The default overlap: both roots trusted at least this long before the new one signs (kubelet's Secret sync and pods starting from the ConfigMap). */
export const DEFAULT_OVERLAP_SECONDS = 120;

const NEXT_FILES: readonly CaFileName[] = [CA_FILES.nextRootKey, CA_FILES.nextCaCert, CA_FILES.nextCaKey, CA_FILES.nextCertChain];
const ISSUER_FILES: readonly CaFileName[] = [CA_FILES.rootKey, CA_FILES.caCert, CA_FILES.caKey, CA_FILES.certChain];

export interface RotationStep {
  files: CaFiles;
  /** The names to write or remove, in the order that keeps every state between them one the control plane takes. */
  order: readonly CaFileName[];
  /** The new root (its key too); for the intermediate layout its key is needed by no one in the mesh. */
  newRoot?: CaKeyPair;
  /** What the step does, one line each, for --dry-run and the log. */
  summary: string[];
}

export interface StartOptions {
  trustDomain: string;
  overlapSeconds?: number;
  rootValidityDays?: number;
  now?: Date;
}

/** The files with a new root added and the material to come beside the material in force. */
export async function startRotation(files: CaFiles, opts: StartOptions): Promise<RotationStep> {
  const material = parseCaFiles(files, 'the CA material');
  if (material.next || material.rotation)
    throw new CaError('internal', 'a root rotation is already in progress; see "tsmesh ca rotate status", then "tsmesh ca rotate finish"');
  const now = opts.now ?? new Date();
  const newRoot = await createRootCa(opts.trustDomain, opts.rootValidityDays, now);
  const out: CaFiles = { ...files, [CA_FILES.rootCert]: material.trustBundle.toPem() + newRoot.certPem };
  const summary = [`add the new root to ${CA_FILES.rootCert} (${material.trustBundle.roots.length + 1} roots then)`];
  if (files[CA_FILES.caCert] !== undefined) {
    const intermediate = await createIntermediateCa(newRoot, opts.trustDomain, undefined, now);
    out[CA_FILES.nextCaCert] = intermediate.certPem;
    out[CA_FILES.nextCaKey] = intermediate.keyPem;
    summary.push(`write a new intermediate signed by the new root (${CA_FILES.nextCaCert}, ${CA_FILES.nextCaKey})`);
  } else {
    out[CA_FILES.nextRootKey] = newRoot.keyPem;
    summary.push(`write the new root's key (${CA_FILES.nextRootKey}); the new root signs once every proxy trusts it`);
  }
  const record: RotationRecord = { startedAt: now.toISOString(), overlapSeconds: opts.overlapSeconds ?? DEFAULT_OVERLAP_SECONDS };
  out[CA_FILES.rotation] = JSON.stringify(record) + '\n';
  summary.push(`write ${CA_FILES.rotation}: both roots trusted for at least ${record.overlapSeconds}s before the new material signs`);
  parseCaFiles(out, 'the new CA material');
  return { files: out, order: [CA_FILES.rootCert, ...NEXT_FILES, CA_FILES.rotation], newRoot, summary };
}

/** The files with the material to come in force and the old root gone. */
export function finishRotation(files: CaFiles): RotationStep {
  const material = parseCaFiles(files, 'the CA material');
  if (!material.next) throw new CaError('internal', 'no root rotation is in progress; start one with "tsmesh ca rotate start"');
  const gone = new Set<CaFileName>([...ISSUER_FILES, ...NEXT_FILES, CA_FILES.rotation]);
  const out: CaFiles = Object.fromEntries(Object.entries(files).filter(([name]) => !gone.has(name as CaFileName)));
  for (const name of ISSUER_FILES) {
    const next = files[(NEXT_PREFIX + name) as CaFileName];
    if (next !== undefined) out[name] = next;
  }
  // The root the old material signs under leaves the bundle; every other root stays.
  const oldRoot = issuingRoot(material.current);
  const newRoot = issuingRoot(material.next);
  const keep = material.trustBundle.roots.filter((r) => r.fingerprint256 !== oldRoot || r.fingerprint256 === newRoot);
  out[CA_FILES.rootCert] = keep.map((r) => r.toString()).join('');
  parseCaFiles(out, 'the new CA material');
  return {
    files: out,
    order: [...ISSUER_FILES, ...NEXT_FILES, CA_FILES.rotation, CA_FILES.rootCert],
    summary: [
      `the material to come signs from now on (${ISSUER_FILES.filter((n) => out[n] !== undefined).join(', ')})`,
      `remove the old root ${oldRoot} from ${CA_FILES.rootCert} (${keep.length} root(s) left)`,
      `remove ${[...NEXT_FILES, CA_FILES.rotation].filter((n) => files[n] !== undefined).join(', ')}`,
    ],
  };
}

/**
 * Writes a step into a CA folder, one file at a time in the step's order,
 * each by rename (a reader never sees half a file); a name the step's files
 * no longer hold is removed.
 */
export async function writeRotationStep(dir: string, before: CaFiles, step: RotationStep): Promise<void> {
  for (const name of step.order) {
    const pem = step.files[name];
    if (pem === before[name]) continue;
    const path = join(dir, name);
    if (pem === undefined) {
      await rm(path, { force: true });
      continue;
    }
    const tmp = join(dir, `.${name}.tmp`);
    await writeFile(tmp, pem, { mode: name.endsWith('-key.pem') ? 0o600 : 0o644 });
    await rename(tmp, path);
  }
}
