// `tsmesh ca rotate`: a live root rotation, step by step, on a CA folder
// (local mode, --ca-dir) or on Secret tsmesh-ca (Kubernetes, where every
// control plane replica follows its mounted copy). The steps' files are
// ca/rotation-files.ts; what the control planes see of their proxies is
// their admin's /api/v1/ca (control/ca-rotation.ts). `finish` removes the old
// root only once every control plane asked says ready-to-retire.
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { CA_FILES, issuingRoot, parseCaFiles, readCaFiles, type CaFiles } from '../ca/material.js';
import { finishRotation, startRotation, writeRotationStep, type RotationStep } from '../ca/rotation-files.js';
import { CA_SECRET_NAME, MESH_NAMESPACE } from '../contract/names.js';
import type { CaStatus } from '../control/ca-rotation.js';
import { CA_STATUS_PATH } from '../control/admin.js';
import { caFilesFromSecret, caSecret } from './ca.js';
import type { Kube, KubeObject } from './kube.js';

type Print = (line: string) => void;

/** Where the CA material lives: a folder, or Secret tsmesh-ca. */
export interface CaStore {
  /** For messages. */
  readonly where: string;
  read(): Promise<CaFiles>;
  write(before: CaFiles, step: RotationStep): Promise<void>;
}

export function dirStore(dir: string): CaStore {
  return { where: dir, read: () => readCaFiles(dir), write: (before, step) => writeRotationStep(dir, before, step) };
}

/** Secret tsmesh-ca, replaced whole (one write: every replica's kubelet projects one generation). */
export function secretStore(kube: Kube): CaStore {
  const ref = { apiVersion: 'v1', kind: 'Secret', metadata: { name: CA_SECRET_NAME, namespace: MESH_NAMESPACE } };
  let resourceVersion: string | undefined;
  return {
    where: `Secret ${MESH_NAMESPACE}/${CA_SECRET_NAME}`,
    async read() {
      const secret = await kube.read<KubeObject & { data?: Record<string, string> }>(ref);
      if (!secret) throw new Error(`Secret ${MESH_NAMESPACE}/${CA_SECRET_NAME} does not exist; install the mesh first (tsmesh install)`);
      resourceVersion = secret.metadata.resourceVersion;
      return caFilesFromSecret(secret);
    },
    async write(_before, step) {
      const next = caSecret(step.files);
      // The version read: a change made meanwhile fails with 409 instead of being overwritten.
      if (resourceVersion) next.metadata.resourceVersion = resourceVersion;
      await kube.replace(next);
    },
  };
}

/** Each control plane's view (its admin's /api/v1/ca), or why it could not be read. */
export async function controlPlaneViews(addresses: readonly string[]): Promise<{ address: string; status?: CaStatus; error?: string }[]> {
  return Promise.all(
    addresses.map(async (address) => {
      try {
        const res = await fetch(`http://${address}${CA_STATUS_PATH}`, { signal: AbortSignal.timeout(5000) });
        if (!res.ok) return { address, error: `${CA_STATUS_PATH} answered ${res.status}` };
        return { address, status: (await res.json()) as CaStatus };
      } catch (e) {
        return { address, error: `cannot read ${CA_STATUS_PATH}: ${(e as Error).message}` };
      }
    }),
  );
}

function describeFiles(files: CaFiles, print: Print): void {
  const m = parseCaFiles(files, 'the CA material');
  const signing = issuingRoot(m.current);
  const next = m.next ? issuingRoot(m.next) : undefined;
  print(m.rotation || next ? `rotation in progress since ${m.rotation?.startedAt ?? '?'} (overlap ${m.rotation?.overlapSeconds ?? 0}s)` : 'no rotation in progress');
  for (const r of m.trustBundle.roots) {
    const role = r.fingerprint256 === signing ? (next ? 'old (signs until every proxy trusts the new one)' : 'signing') : r.fingerprint256 === next ? 'new' : 'trusted';
    print(`  root ${r.fingerprint256}  ${role}; expires ${new Date(r.validTo).toISOString()}`);
  }
}

function describeViews(views: Awaited<ReturnType<typeof controlPlaneViews>>, print: Print): void {
  for (const v of views) {
    if (!v.status) {
      print(`control plane ${v.address}: ${v.error}`);
      continue;
    }
    const s = v.status;
    print(`control plane ${v.address}: ${s.phase}, signing under ${s.signingRoot}, ${s.proxies.length} proxies on its stream`);
    if (s.refused) print(`  refused a change of the CA material at ${s.refused.at}: ${s.refused.error}`);
    for (const w of s.waitingFor) print(`  waiting for ${w}`);
  }
}

export async function rotateStatus(store: CaStore, addresses: readonly string[], print: Print): Promise<void> {
  print(`${store.where}:`);
  describeFiles(await store.read(), print);
  describeViews(await controlPlaneViews(addresses), print);
}

export interface RotateStartOptions {
  trustDomain: string;
  overlapSeconds?: number;
  rootValidityDays?: number;
  dryRun?: boolean;
  /** Where to keep the new root's key when an intermediate signs (the mesh does not need it). */
  rootKeyOut?: string;
}

export async function rotateStart(store: CaStore, opts: RotateStartOptions, print: Print): Promise<void> {
  const before = await store.read();
  const step = await startRotation(before, {
    trustDomain: opts.trustDomain,
    ...(opts.overlapSeconds !== undefined ? { overlapSeconds: opts.overlapSeconds } : {}),
    ...(opts.rootValidityDays !== undefined ? { rootValidityDays: opts.rootValidityDays } : {}),
  });
  const fingerprint = new X509Certificate(step.newRoot!.certPem).fingerprint256;
  print(`${opts.dryRun ? 'would start' : 'starting'} a root rotation in ${store.where}: new root ${fingerprint}`);
  for (const line of step.summary) print(`  ${line}`);
  if (opts.dryRun) return;
  if (before[CA_FILES.caCert] !== undefined && opts.rootKeyOut) {
    await writeFile(opts.rootKeyOut, step.newRoot!.keyPem, { mode: 0o600, flag: 'wx' });
    print(`  the new root's key is in ${opts.rootKeyOut}; keep it offline`);
  }
  await store.write(before, step);
  print('written. Every control plane now streams both roots, then signs under the new one and has its proxies renew.');
  print('Watch it with "tsmesh ca rotate status", then run "tsmesh ca rotate finish" once every control plane is ready-to-retire.');
}

export interface RotateFinishOptions {
  /** Control plane admin addresses (HOST:PORT) that must all say ready-to-retire. */
  addresses: readonly string[];
  /** Remove the old root without asking any control plane. */
  force?: boolean;
  dryRun?: boolean;
  /** Wait this long for every control plane to be ready (0: ask once). */
  waitMs?: number;
}

/** Throws with what is waited for when a control plane is not ready-to-retire. */
export async function rotateFinish(store: CaStore, opts: RotateFinishOptions, print: Print): Promise<void> {
  if (opts.addresses.length === 0 && !opts.force)
    throw new Error('finish removes the old root: name every control plane replica with --admin-address HOST:PORT (its port 15014) so it can check that none still depends on it, or pass --force');
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    const views = opts.force ? [] : await controlPlaneViews(opts.addresses);
    const notReady = views.filter((v) => v.status?.phase !== 'ready-to-retire');
    if (notReady.length === 0) break;
    if (Date.now() >= deadline) {
      describeViews(notReady, print);
      throw new Error(`${notReady.length} control plane(s) are not ready-to-retire; the old root stays until they are (see above what each waits for)`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const before = await store.read();
  const step = finishRotation(before);
  print(`${opts.dryRun ? 'would finish' : 'finishing'} the root rotation in ${store.where}:`);
  for (const line of step.summary) print(`  ${line}`);
  if (opts.dryRun) return;
  await store.write(before, step);
  print('written. Every control plane now streams the new root alone; "tsmesh ca rotate status" shows it.');
}
