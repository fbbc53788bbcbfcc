// Applying and removing an install. Every object is server-side applied with
// field manager tsmesh-install (conflicts forced: install owns what it
// renders), except Secret tsmesh-ca, which is only ever created, or replaced
// by one that still holds every root of the old one: replacing a root
// outright would make every proxy certificate in the mesh untrusted at once.
import { GATEWAY_API_BUNDLE_VERSION_ANNOTATION, GATEWAY_API_CHANNEL_ANNOTATION, MESH_NAMESPACE, CONTROL_PLANE_NAME, INJECT_ENABLED, INJECT_LABEL, STATUS_ANNOTATION, CA_SECRET_NAME, MANAGED_BY_LABELS, TRUST_BUNDLE_CONFIGMAP, WEBHOOK_CONFIGURATION_NAME } from '../contract/names.js';
import { CA_FILES } from '../ca/material.js';
import { CA_FILE_NAMES, caFilesFromSecret, caSecret, droppedRoots, type CaMaterial } from './ca.js';
import { describeObject, KubeError, type Kube, type KubeObject } from './kube.js';
import type { Rendered } from './render.js';

/** Lease of the control plane's leader election (control/leader.ts). */

export type Print = (line: string) => void;

const secretRef = (): KubeObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: CA_SECRET_NAME, namespace: MESH_NAMESPACE } });

/** Reads Secret tsmesh-ca; undefined when there is none. */
export async function readCaSecret(kube: Kube): Promise<(KubeObject & { data?: Record<string, string> }) | undefined> {
  return kube.read<KubeObject & { data?: Record<string, string> }>(secretRef());
}

/**
 * Creates Secret tsmesh-ca, or keeps the one in the cluster. With material
 * the user brought, an existing Secret is replaced when it differs, as long
 * as the new root-cert.pem still holds every root of the old one.
 */
export async function ensureCaSecret(kube: Kube, material: CaMaterial | undefined, print: Print, dryRun = false): Promise<'created' | 'kept' | 'unchanged' | 'replaced'> {
  const existing = await readCaSecret(kube);
  const name = describeObject(secretRef());
  if (!material) {
    if (!existing) throw new Error(`${name} does not exist and no CA was given; pass --ca-dir or let tsmesh install generate one`);
    print(`${name} kept (the mesh CA already in the cluster)`);
    return 'kept';
  }
  if (!existing) {
    try {
      await kube.create(caSecret(material.files), { dryRun });
    } catch (e) {
      // Created meanwhile (another install): keep that one.
      if (e instanceof KubeError && e.status === 409) {
        print(`${name} kept (created meanwhile)`);
        return 'kept';
      }
      throw e;
    }
    print(`${name} created${material.generated ? ' with a new root CA' : ' from --ca-dir'}${dryRun ? ' (server dry run)' : ''}`);
    return 'created';
  }
  if (material.generated) {
    print(`${name} kept (the mesh CA already in the cluster)`);
    return 'kept';
  }
  const old = caFilesFromSecret(existing);
  if (CA_FILE_NAMES.every((f) => old[f] === material.files[f])) {
    print(`${name} unchanged`);
    return 'unchanged';
  }
  if (old[CA_FILES.rotation] !== undefined && old[CA_FILES.rotation] !== material.files[CA_FILES.rotation]) {
    throw new Error(
      `${name} holds a root rotation in progress (${CA_FILES.rotation}) that --ca-dir does not carry; replacing it would drop the root to come. ` +
        'Finish the rotation first ("tsmesh ca rotate status", then "tsmesh ca rotate finish"), or bring a --ca-dir with the same files.',
    );
  }
  const dropped = droppedRoots(old[CA_FILES.rootCert] ?? '', material.files[CA_FILES.rootCert] ?? '');
  if (dropped.length > 0) {
    throw new Error(
      `${name} holds ${dropped.length === 1 ? 'a root' : 'roots'} that --ca-dir's root-cert.pem leaves out (${dropped.map((c) => c.subject.replace(/\n/g, ', ')).join('; ')}). ` +
        'Replacing a root at once makes every proxy certificate untrusted. Rotate in steps: put the old and the new root together in root-cert.pem, ' +
        'install, wait until every proxy renewed its certificate (one certificate lifetime), then drop the old root. ' +
        `To throw the old CA away anyway: kubectl -n ${MESH_NAMESPACE} delete secret ${CA_SECRET_NAME}, then install again.`,
    );
  }
  const next = caSecret(material.files);
  next.metadata.resourceVersion = existing.metadata.resourceVersion!;
  await kube.replace(next, { dryRun });
  print(`${name} replaced from --ca-dir${dryRun ? ' (server dry run)' : ''}; every control plane replica takes the new material once kubelet updates its mounted Secret (no restart)`);
  return 'replaced';
}

/** A CRD of the Gateway API bundle (manifests/gateway-api-crds.yaml): it carries the bundle's version annotation. */
export function isGatewayApiCrd(o: Pick<KubeObject, 'kind' | 'metadata'>): boolean {
  return o.kind === 'CustomResourceDefinition' && o.metadata.annotations?.[GATEWAY_API_BUNDLE_VERSION_ANNOTATION] !== undefined;
}

/** Compares Gateway API bundle versions (v1.6.3, v1.10.0-rc.1): negative when a is older; NaN when either does not read as vX.Y.Z. */
export function compareBundleVersions(a: string, b: string): number {
  const parse = (v: string): number[] | undefined => {
    const m = /^v(\d+)\.(\d+)\.(\d+)(-.+)?$/.exec(v);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : 0] : undefined;
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return Number.NaN;
  for (let i = 0; i < pa.length; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

/**
 * A Gateway API CRD is shared with every other user of the API in the
 * cluster: created when absent, upgraded from an older bundle of the same
 * channel, and otherwise left as it is (never a downgrade, never another
 * channel's fields dropped).
 */
export async function ensureGatewayApiCrd(kube: Kube, crd: KubeObject, print: Print, dryRun = false): Promise<'created' | 'upgraded' | 'kept'> {
  const ours = crd.metadata.annotations?.[GATEWAY_API_BUNDLE_VERSION_ANNOTATION] ?? '';
  const channel = crd.metadata.annotations?.[GATEWAY_API_CHANNEL_ANNOTATION] ?? '';
  const existing = await kube.read(crd);
  const name = describeObject(crd);
  const suffix = dryRun ? ' (server dry run)' : '';
  if (!existing) {
    // Server-side apply without force: sent again safely if the connection breaks, and a field another
    // manager set meanwhile is a conflict, never overwritten.
    await kube.apply(crd, { dryRun, force: false });
    print(`${name} created (Gateway API ${ours} ${channel})${suffix}`);
    return 'created';
  }
  const theirs = existing.metadata.annotations?.[GATEWAY_API_BUNDLE_VERSION_ANNOTATION] ?? '';
  const theirChannel = existing.metadata.annotations?.[GATEWAY_API_CHANNEL_ANNOTATION] ?? '';
  const order = compareBundleVersions(theirs, ours);
  if (theirChannel === channel && order < 0) {
    await kube.apply(crd, { dryRun });
    print(`${name} upgraded from Gateway API ${theirs} to ${ours}${suffix}`);
    return 'upgraded';
  }
  const why =
    theirChannel !== channel
      ? `its ${theirChannel || 'unknown'} channel is not replaced by ${channel}`
      : Number.isNaN(order)
        ? `its bundle-version ${JSON.stringify(theirs)} does not read as a release`
        : order > 0
          ? `newer than this install's ${ours}, never downgraded`
          : 'the same release';
  print(`${name} kept (Gateway API ${theirs || 'without a bundle-version'}: ${why})`);
  return 'kept';
}

/**
 * Applies the rendered objects in order (the CA Secret through
 * ensureCaSecret). With dryRun, the API server checks every object and
 * stores nothing (`--dry-run=server`).
 */
export async function applyInstall(kube: Kube, rendered: Rendered, ca: CaMaterial | undefined, print: Print, opts: { dryRun?: boolean } = {}): Promise<void> {
  let secretDone = false;
  for (const { file, object } of rendered.objects) {
    if (file === '' && object.kind === 'Secret') {
      await ensureCaSecret(kube, ca, print, opts.dryRun);
      secretDone = true;
      continue;
    }
    if (isGatewayApiCrd(object)) {
      try {
        await ensureGatewayApiCrd(kube, object, print, opts.dryRun);
      } catch (e) {
        throw new Error(`applying ${describeObject(object)} (manifests/${file}): ${(e as Error).message}`, { cause: e });
      }
      kube.forgetDiscovery();
      continue;
    }
    let res;
    try {
      res = await kube.apply(object, { dryRun: opts.dryRun ?? false });
    } catch (e) {
      // With dryRun, the objects of a namespace or a CRD not yet created cannot be checked.
      if (opts.dryRun && e instanceof KubeError && e.status === 404 && object.kind !== 'Namespace') {
        print(`${describeObject(object)} not checked: ${e.apiMessage} (it depends on an object this dry run did not create)`);
        continue;
      }
      throw new Error(`applying ${describeObject(object)} (manifests/${file}): ${(e as Error).message}`, { cause: e });
    }
    for (const w of res.warnings) print(`warning: ${describeObject(object)}: ${w}`);
    print(`${describeObject(object)} applied${opts.dryRun ? ' (server dry run)' : ''}`);
    if (object.kind === 'CustomResourceDefinition') kube.forgetDiscovery();
    // Rendered without a Secret (the cluster has one): say so where the Secret would be.
    if (object.kind === 'Namespace' && object.metadata.name === MESH_NAMESPACE && !rendered.objects.some((r) => r.file === '' && r.object.kind === 'Secret')) {
      await ensureCaSecret(kube, ca, print, opts.dryRun);
      secretDone = true;
    }
  }
  if (!secretDone) await ensureCaSecret(kube, ca, print, opts.dryRun);
}

interface DeploymentStatus {
  metadata?: { generation?: number };
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; replicas?: number; updatedReplicas?: number; availableReplicas?: number; readyReplicas?: number };
}

/** Why the control plane's rollout is not complete (as `kubectl rollout status` judges it); undefined when it is. */
export function rolloutPending(d: DeploymentStatus | undefined): string | undefined {
  if (!d) return `Deployment ${CONTROL_PLANE_NAME} does not exist`;
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  if ((s.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)) return 'the Deployment controller has not seen the latest spec yet';
  if ((s.updatedReplicas ?? 0) < want) return `${s.updatedReplicas ?? 0} of ${want} replicas updated`;
  if ((s.replicas ?? 0) > (s.updatedReplicas ?? 0)) return `${(s.replicas ?? 0) - (s.updatedReplicas ?? 0)} old replicas still running`;
  if ((s.availableReplicas ?? 0) < want) return `${s.availableReplicas ?? 0} of ${want} replicas available`;
  return undefined;
}

export const deploymentPath = `/apis/apps/v1/namespaces/${MESH_NAMESPACE}/deployments/${CONTROL_PLANE_NAME}`;

/** Polls the control plane's Deployment until its rollout completes; throws with the last reason after timeoutMs. */
export async function waitForControlPlane(kube: Kube, timeoutMs: number, print: Print, pollMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string | undefined;
  for (;;) {
    last = rolloutPending(await kube.get<DeploymentStatus>(deploymentPath));
    if (last === undefined) {
      print(`Deployment ${MESH_NAMESPACE}/${CONTROL_PLANE_NAME} is available`);
      return;
    }
    if (Date.now() + pollMs > deadline)
      throw new Error(
        `the control plane is not ready after ${Math.round(timeoutMs / 1000)}s: ${last}; see kubectl -n ${MESH_NAMESPACE} describe deployment ${CONTROL_PLANE_NAME} and kubectl -n ${MESH_NAMESPACE} logs deployment/${CONTROL_PLANE_NAME}`,
      );
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface UninstallOptions {
  dryRun?: boolean;
  /** Also delete the tsmesh CRDs, and with them every TrafficPolicy and AuthorizationPolicy (never the Gateway API's). */
  crds?: boolean;
}

interface ListOf<T> {
  items?: T[];
}

/**
 * Removes an install: the webhook first (with failurePolicy Fail, a webhook
 * whose control plane is gone refuses every pod of a meshed namespace), then
 * everything else in reverse order, the trust-bundle ConfigMaps the control
 * plane wrote, and the namespace last. CRDs only when asked.
 */
export async function uninstall(kube: Kube, rendered: Rendered, print: Print, opts: UninstallOptions = {}): Promise<void> {
  const dryRun = opts.dryRun ?? false;
  const suffix = dryRun ? ' (server dry run)' : '';
  const del = async (o: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<void> => {
    const gone = await kube.delete(o, { dryRun });
    print(`${describeObject(o)} ${gone ? `deleted${suffix}` : 'not found'}`);
  };
  const objects = rendered.objects.map((r) => r.object);
  const webhook = objects.find((o) => o.kind === 'MutatingWebhookConfiguration' && o.metadata.name === WEBHOOK_CONFIGURATION_NAME);
  if (webhook) await del(webhook);
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition' && !isGatewayApiCrd(o));
  const gatewayCrds = objects.filter(isGatewayApiCrd);
  for (const o of [...objects].reverse()) {
    if (o === webhook || o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition') continue;
    await del(o);
  }
  if (!objects.some((o) => o.kind === 'Secret' && o.metadata.name === CA_SECRET_NAME)) await del(secretRef());
  await del({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: CONTROL_PLANE_NAME, namespace: MESH_NAMESPACE } });
  const selector = Object.entries(MANAGED_BY_LABELS)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const bundles = await kube.get<ListOf<KubeObject>>('/api/v1/configmaps', { labelSelector: selector, fieldSelector: `metadata.name=${TRUST_BUNDLE_CONFIGMAP}` });
  for (const cm of bundles?.items ?? []) await del({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: cm.metadata.name, namespace: cm.metadata.namespace! } });
  for (const ns of namespaces) await del(ns);
  if (opts.crds) for (const crd of crds) await del(crd);
  else if (crds.length > 0) print(`kept the CRDs (${crds.map((c) => c.metadata.name).join(', ')}) and the policies in them; --crds deletes them too`);
  if (gatewayCrds.length > 0) print(`kept the Gateway API CRDs (${gatewayCrds.map((c) => c.metadata.name).join(', ')}) and the routes in them: other controllers in the cluster may use them`);

  // What the mesh leaves behind in users' namespaces.
  const labelled = await kube.get<ListOf<KubeObject>>('/api/v1/namespaces', { labelSelector: `${INJECT_LABEL}=${INJECT_ENABLED}` });
  const names = (labelled?.items ?? []).map((n) => n.metadata.name).filter((n) => n !== MESH_NAMESPACE);
  for (const ns of names) {
    const pods = await kube.get<ListOf<KubeObject>>(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods`);
    const meshed = (pods?.items ?? []).filter((p) => p.metadata.annotations?.[STATUS_ANNOTATION] !== undefined).length;
    print(
      `namespace ${ns} is still labelled ${INJECT_LABEL}=${INJECT_ENABLED}${meshed > 0 ? ` and runs ${meshed} pod(s) with a tsmesh proxy, which keep their last config until their certificates expire` : ''}: ` +
        `kubectl label namespace ${ns} ${INJECT_LABEL}-${meshed > 0 ? ` && kubectl -n ${ns} rollout restart deployment` : ''}`,
    );
  }
}

