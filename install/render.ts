// What `tsmesh install` applies: the files of manifests/kustomization.yaml,
// in its order, with the install's settings laid over them, plus Secret
// tsmesh-ca. The YAML is edited in place (comments and layout kept), so the
// printed manifests read like the files in manifests/; a file no setting
// touches is printed byte for byte.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Document, isMap, isScalar, isSeq, parseAllDocuments } from 'yaml';
import { MAX_TTL_SECONDS, MIN_TTL_SECONDS } from '../ca/authority.js';
import { validateTrustDomain } from '../contract/spiffe.js';
import { MESH_NAMESPACE, CONTROL_PLANE_NAME, MESH_CONFIG_NAME, WEBHOOK_CONFIGURATION_NAME } from '../contract/names.js';
import { parseDuration } from '../lib/duration.js';
import { IMAGE_REPOSITORY, TSMESH_VERSION } from '../webhook/mesh-config.js';
import { caSecret, type CaMaterial } from './ca.js';
import type { KubeObject } from './kube.js';

export const FAILURE_POLICIES = ['Fail', 'Ignore'] as const;
export type FailurePolicy = (typeof FAILURE_POLICIES)[number];

export const DEFAULT_IMAGE = `${IMAGE_REPOSITORY}:${TSMESH_VERSION}`;
export const CONTROL_PLANE_CONTAINER = 'control-plane';

/** The folder of manifests/ in this package (source tree or installed package). */
export function findManifestsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'tsmesh') return join(dir, 'manifests');
    } catch {
      // not here; one folder up
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the tsmesh package (and its manifests/ folder) above ' + dirname(fileURLToPath(import.meta.url)));
}

/** The `resources` of kustomization.yaml: plain file names inside dir, in order. */
export function kustomizationResources(dir: string): string[] {
  const doc = parseAllDocuments(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0];
  const value = doc?.toJS() as { kind?: string; resources?: unknown } | undefined;
  if (value?.kind !== 'Kustomization' || !Array.isArray(value.resources)) throw new Error(`${join(dir, 'kustomization.yaml')} is not a Kustomization with a resources list`);
  return value.resources.map((r) => {
    if (typeof r !== 'string' || !/^[\w.-]+\.ya?ml$/.test(r)) throw new Error(`kustomization.yaml: resource ${JSON.stringify(r)} is not a YAML file of the folder`);
    return r;
  });
}

export interface ManifestFile {
  file: string;
  text: string;
  /** Parsed as kubectl parses (YAML 1.1), comments kept. */
  docs: Document.Parsed[];
}

export function readManifestFiles(dir = findManifestsDir()): ManifestFile[] {
  return kustomizationResources(dir).map((file) => {
    const text = readFileSync(join(dir, file), 'utf8');
    const docs = parseAllDocuments(text, { version: '1.1' });
    for (const d of docs) if (d.errors.length > 0) throw new Error(`manifests/${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return { file, text, docs: docs.filter((d) => d.contents !== null) };
  });
}

export interface RenderOptions {
  /** The image of the control plane and of the injected containers. */
  image?: string | undefined;
  trustDomain?: string | undefined;
  /** Workload certificate lifetime (the control plane's --cert-ttl). */
  certTtl?: string | undefined;
  failurePolicy?: FailurePolicy | undefined;
  /** Secret tsmesh-ca; left out when undefined. */
  ca?: CaMaterial | undefined;
}

export interface RenderedObject {
  /** manifests/ file it comes from; '' for the CA Secret. */
  file: string;
  object: KubeObject;
}

export interface Rendered {
  /** Every object, in the order to apply them (the kustomization's; the Secret after the Namespace). */
  objects: RenderedObject[];
  /** The YAML stream `tsmesh install --dry-run` prints. */
  text: string;
}

/** Checks the settings; each error names the flag, the value and what is expected. */
export function checkRenderOptions(o: RenderOptions): void {
  if (o.image !== undefined && !/^[a-z0-9]+([._/:@-][A-Za-z0-9_.-]+)*$/.test(o.image)) throw new Error(`--image ${JSON.stringify(o.image)} is not an image reference (registry/name:tag or name@sha256:digest)`);
  if (o.trustDomain !== undefined) {
    try {
      validateTrustDomain(o.trustDomain);
    } catch (e) {
      throw new Error(`--trust-domain ${JSON.stringify(o.trustDomain)}: ${(e as Error).message}`, { cause: e });
    }
  }
  if (o.certTtl !== undefined) {
    const seconds = parseDuration(o.certTtl, '--cert-ttl') / 1000;
    if (seconds < MIN_TTL_SECONDS || seconds > MAX_TTL_SECONDS) throw new Error(`--cert-ttl ${o.certTtl} is outside ${MIN_TTL_SECONDS / 60}m to ${MAX_TTL_SECONDS / 86_400}d`);
  }
  if (o.failurePolicy !== undefined && !(FAILURE_POLICIES as readonly string[]).includes(o.failurePolicy)) throw new Error(`--failure-policy ${JSON.stringify(o.failurePolicy)} is not one of ${FAILURE_POLICIES.join(', ')}`);
}

const kindAndName = (d: Document.Parsed): [unknown, unknown] => [d.get('kind'), d.getIn(['metadata', 'name'])];

/** The kinds renderInstall's settings edit. */
const EDITED_KINDS = new Set(['Deployment', 'ConfigMap', 'MutatingWebhookConfiguration']);

function findDoc(files: ManifestFile[], kind: string, name: string): { file: ManifestFile; doc: Document.Parsed } {
  for (const file of files) {
    for (const doc of file.docs) {
      const [k, n] = kindAndName(doc);
      if (k === kind && n === name) return { file, doc };
    }
  }
  throw new Error(`manifests/ has no ${kind} ${name}; the package is damaged or its kustomization.yaml leaves the file out`);
}

/** Sets a scalar and notes on its line which install flag set it. */
function setValue(doc: Document.Parsed, path: (string | number)[], value: string, comment: string): void {
  doc.setIn(path, value);
  const node = doc.getIn(path, true);
  if (isScalar(node)) node.comment = ` ${comment}`;
}

/** Sets `--flag=value` in a container's args: replaces the flag where it is, else appends it. */
function setArg(doc: Document.Parsed, argsPath: (string | number)[], flag: string, value: string, comment: string): void {
  const args = doc.getIn(argsPath, true);
  if (!isSeq(args)) throw new Error(`${argsPath.join('.')} is not a list`);
  let item = args.items.find((i) => isScalar(i) && typeof i.value === 'string' && (i.value === flag || i.value.startsWith(`${flag}=`)));
  if (!item) {
    item = doc.createNode(`${flag}=${value}`);
    args.items.push(item);
  }
  if (isScalar(item)) {
    item.value = `${flag}=${value}`;
    item.comment = ` ${comment}`;
  }
}

function containerIndex(doc: Document.Parsed, name: string): number {
  const containers = doc.getIn(['spec', 'template', 'spec', 'containers'], true);
  const i = isSeq(containers) ? containers.items.findIndex((c) => isMap(c) && c.get('name') === name) : -1;
  if (i < 0) throw new Error(`Deployment ${CONTROL_PLANE_NAME} has no container ${name}`);
  return i;
}

const TO_STRING = { lineWidth: 0, flowCollectionPadding: false } as const;

function header(o: RenderOptions): string {
  const flags = [
    o.image !== undefined ? `--image=${o.image}` : '',
    o.trustDomain !== undefined ? `--trust-domain=${o.trustDomain}` : '',
    o.certTtl !== undefined ? `--cert-ttl=${o.certTtl}` : '',
    o.failurePolicy !== undefined ? `--failure-policy=${o.failurePolicy}` : '',
  ].filter((f) => f !== '');
  return [
    `# tsmesh ${TSMESH_VERSION}, rendered by: tsmesh install --dry-run${flags.length > 0 ? ` ${flags.join(' ')}` : ''}`,
    '#',
    '# Apply in this order (kubectl applies a stream top to bottom):',
    '#   kubectl apply --server-side -f FILE',
    '# or let `tsmesh install` apply it: it also keeps the CA already in the',
    '# cluster instead of replacing it. Remove with `tsmesh uninstall`.',
    '',
  ].join('\n');
}

function secretText(ca: CaMaterial): string {
  const doc = new Document(caSecret(ca.files));
  // On the mapping, not the document: no blank line between the comment and the object.
  const contents = doc.contents as { commentBefore?: string | null };
  contents.commentBefore = ca.generated
    ? [
        ' The mesh CA: a root generated for this output (root-cert.pem, root-key.pem),',
        ' mounted by the control plane at /etc/tsmesh/ca. Applying this document over',
        ' a running mesh replaces its root, and every proxy certificate stops being',
        ' trusted: to upgrade, run `tsmesh install` (it keeps the Secret in the',
        ' cluster), or leave this document out.',
      ].join('\n')
    : ' The mesh CA, from --ca-dir, mounted by the control plane at /etc/tsmesh/ca.';
  return doc.toString(TO_STRING);
}

/** The manifests with the settings applied; pure apart from reading manifests/ (pass `files` to avoid even that). */
export function renderInstall(o: RenderOptions = {}, files: ManifestFile[] = readManifestFiles()): Rendered {
  checkRenderOptions(o);
  // Parse afresh the files the settings may edit (the edits below change their
  // documents); the others, the Gateway API's large CRDs among them, are kept as read.
  const fresh: ManifestFile[] = files.map((f) =>
    f.docs.some((d) => EDITED_KINDS.has(String(kindAndName(d)[0]))) ? { ...f, docs: parseAllDocuments(f.text, { version: '1.1' }).filter((d) => d.contents !== null) } : f,
  );
  const changed = new Set<string>();

  const deployment = findDoc(fresh, 'Deployment', CONTROL_PLANE_NAME);
  const c = containerIndex(deployment.doc, CONTROL_PLANE_CONTAINER);
  const containerPath = ['spec', 'template', 'spec', 'containers', c];
  if (o.image !== undefined) {
    setValue(deployment.doc, [...containerPath, 'image'], o.image, 'tsmesh install --image');
    // The injected init and proxy containers run the same image.
    setArg(deployment.doc, [...containerPath, 'args'], '--proxy-image', o.image, 'tsmesh install --image: the image of injected containers');
    changed.add(deployment.file.file);
  }
  if (o.trustDomain !== undefined) {
    setArg(deployment.doc, [...containerPath, 'args'], '--trust-domain', o.trustDomain, 'tsmesh install --trust-domain');
    const config = findDoc(fresh, 'ConfigMap', MESH_CONFIG_NAME);
    setValue(config.doc, ['data', 'trustDomain'], o.trustDomain, 'tsmesh install --trust-domain');
    changed.add(deployment.file.file).add(config.file.file);
  }
  if (o.certTtl !== undefined) {
    setArg(deployment.doc, [...containerPath, 'args'], '--cert-ttl', o.certTtl, 'tsmesh install --cert-ttl');
    changed.add(deployment.file.file);
  }
  if (o.failurePolicy !== undefined) {
    const webhook = findDoc(fresh, 'MutatingWebhookConfiguration', WEBHOOK_CONFIGURATION_NAME);
    const hooks = webhook.doc.get('webhooks', true);
    if (!isSeq(hooks)) throw new Error(`MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} has no webhooks`);
    const why =
      o.failurePolicy === 'Ignore'
        ? 'tsmesh install --failure-policy: while the webhook is unreachable, pods start without a proxy'
        : 'tsmesh install --failure-policy';
    hooks.items.forEach((_h, i) => setValue(webhook.doc, ['webhooks', i, 'failurePolicy'], o.failurePolicy!, why));
    changed.add(webhook.file.file);
  }

  const objects: RenderedObject[] = [];
  const parts: string[] = [header(o)];
  for (const f of fresh) {
    const body = changed.has(f.file) ? f.docs.map((d) => d.toString(TO_STRING)).join('') : f.text;
    parts.push(`---\n# Source: manifests/${f.file}\n${body.replace(/^---\n/, '').trimEnd()}\n`);
    for (const d of f.docs) objects.push({ file: f.file, object: d.toJS() as KubeObject });
    if (o.ca && f.docs.some((d) => kindAndName(d)[0] === 'Namespace' && kindAndName(d)[1] === MESH_NAMESPACE)) {
      parts.push(`---\n${secretText(o.ca)}`);
      objects.push({ file: '', object: caSecret(o.ca.files) });
    }
  }
  if (o.ca && !objects.some((r) => r.file === '')) throw new Error(`manifests/ has no Namespace ${MESH_NAMESPACE} to put Secret tsmesh-ca in`);
  return { objects, text: parts.join('') };
}

