// `tsmesh install` and `tsmesh uninstall` as an operator runs them (the CLI,
// KUBECONFIG pointing at a real kube-apiserver with its controllers):
// install applies everything and makes the CA once, running it again
// upgrades in place and keeps the CA and the settings users changed, a CA
// brought with --ca-dir replaces the old one only when it keeps its roots,
// and uninstall removes what install and the control plane made. The
// Gateway API CRDs are created when absent, upgraded from an older bundle,
// never downgraded, and left by uninstall.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { CA_FILES, writeRootCa } from '../../ca/material.js';
import { createRootCa } from '../../ca/root.js';
import { caFilesFromSecret } from '../../install/ca.js';
import { Kube, type KubeObject } from '../../install/kube.js';
import { createNamespace, eventually, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts');
const NS = 'tsmesh-system';
const SECRET = `/api/v1/namespaces/${NS}/secrets/tsmesh-ca`;
const DEPLOYMENT = `/apis/apps/v1/namespaces/${NS}/deployments/tsmesh-control-plane`;
const WEBHOOK = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tsmesh-sidecar-injector';
const CONFIG = `/api/v1/namespaces/${NS}/configmaps/tsmesh-config`;
const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const BUNDLE = 'gateway.networking.k8s.io/bundle-version';

interface Secret extends KubeObject {
  data?: Record<string, string>;
}

describe('tsmesh install and uninstall (real kube-apiserver and controllers)', function () {
  this.timeout(180_000);
  let server: ApiServer | undefined;
  let kube: Kube;
  let dir: string;

  async function tsmesh(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: server!.kubeconfigPath } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(p, 'exit')) as [number | null];
    return { code, out, err };
  }
  const rootPem = async (): Promise<string> => caFilesFromSecret((await kube.get<Secret>(SECRET))!)[CA_FILES.rootCert]!;

  before(async function () {
    skipWithoutApiServer(this, { controllers: true });
    server = await startApiServer({ controllers: true });
    kube = new Kube(server.kc);
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-install-'));
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('tsmesh check before install: not installed, and how to fix it', async function () {
    const r = await tsmesh('check');
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.out, /\[FAIL\] namespace tsmesh-system does not exist: tsmesh is not installed\n {9}fix: tsmesh install\n/);
  });

  it('applies every object, with the flags, and a new root CA in Secret tsmesh-ca', async function () {
    const r = await tsmesh('install', '--image', 'registry.example/tsmesh:dev', '--failure-policy', 'Ignore', '--trust-domain', 'mesh.example');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^Namespace tsmesh-system applied$/m);
    assert.match(r.out, /^Secret tsmesh-system\/tsmesh-ca created with a new root CA$/m);
    assert.match(r.out, /^MutatingWebhookConfiguration tsmesh-sidecar-injector applied$/m);
    for (const crd of ['httproutes', 'grpcroutes', 'referencegrants']) assert.match(r.out, new RegExp(`^CustomResourceDefinition ${crd}\\.gateway\\.networking\\.k8s\\.io created \\(Gateway API v1\\.6\\.3 standard\\)$`, 'm'));
    assert.doesNotMatch(r.out, /warning/i);
    const d = (await kube.get<{ spec: { replicas: number; template: { spec: { containers: { image: string; args: string[] }[] } } } }>(DEPLOYMENT))!;
    assert.equal(d.spec.replicas, 2);
    assert.equal(d.spec.template.spec.containers[0]!.image, 'registry.example/tsmesh:dev');
    assert.ok(d.spec.template.spec.containers[0]!.args.includes('--proxy-image=registry.example/tsmesh:dev'));
    const w = (await kube.get<{ webhooks: { failurePolicy: string }[] }>(WEBHOOK))!;
    assert.equal(w.webhooks[0]!.failurePolicy, 'Ignore');
    const root = new X509Certificate(await rootPem());
    assert.equal(root.subjectAltName, 'URI:spiffe://mesh.example');
    for (const path of ['/apis/policy/v1/namespaces/tsmesh-system/poddisruptionbudgets/tsmesh-control-plane', CONFIG, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trafficpolicies.tsmesh.io'])
      assert.ok(await kube.get(path), path);
    const managers = ((await kube.get<{ metadata: { managedFields: { manager: string }[] } }>(DEPLOYMENT))!.metadata.managedFields ?? []).map((f) => f.manager);
    assert.ok(managers.includes('tsmesh-install'), managers.join(', '));
  });

  it('keeps Gateway API CRDs of a newer bundle or another channel, upgrades an older one, and tsmesh check reports the bundle-version', async function () {
    const annotate = (name: string, annotations: Record<string, string>) =>
      kube.request('PATCH', `${CRDS}/${name}.gateway.networking.k8s.io`, { body: { metadata: { annotations } }, contentType: 'application/merge-patch+json', query: { fieldManager: 'other-controller' } });
    const version = async (name: string) => (await kube.get<KubeObject>(`${CRDS}/${name}.gateway.networking.k8s.io`))!.metadata.annotations![BUNDLE];
    let c = await tsmesh('check');
    assert.match(c.out, /\[ok\] {3}Gateway API CRDs \(httproutes\.gateway\.networking\.k8s\.io, grpcroutes\.gateway\.networking\.k8s\.io, referencegrants\.gateway\.networking\.k8s\.io\) at bundle-version v1\.6\.3 standard/);
    await annotate('httproutes', { [BUNDLE]: 'v1.7.0' });
    await annotate('grpcroutes', { [BUNDLE]: 'v1.5.1' });
    await annotate('referencegrants', { 'gateway.networking.k8s.io/channel': 'experimental' });
    c = await tsmesh('check');
    assert.match(c.out, /\[warn\] the Gateway API CRDs come from different bundles \(httproutes\.gateway\.networking\.k8s\.io: v1\.7\.0 standard; grpcroutes\.gateway\.networking\.k8s\.io: v1\.5\.1 standard; referencegrants\.gateway\.networking\.k8s\.io: v1\.6\.3 experimental\)/);
    const r = await tsmesh('install', '--trust-domain', 'mesh.example');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^CustomResourceDefinition httproutes\.gateway\.networking\.k8s\.io kept \(Gateway API v1\.7\.0: newer than this install's v1\.6\.3, never downgraded\)$/m);
    assert.match(r.out, /^CustomResourceDefinition grpcroutes\.gateway\.networking\.k8s\.io upgraded from Gateway API v1\.5\.1 to v1\.6\.3$/m);
    assert.match(r.out, /^CustomResourceDefinition referencegrants\.gateway\.networking\.k8s\.io kept \(Gateway API v1\.6\.3: its experimental channel is not replaced by standard\)$/m);
    assert.equal(await version('httproutes'), 'v1.7.0');
    assert.equal(await version('grpcroutes'), 'v1.6.3');
    await annotate('httproutes', { [BUNDLE]: 'v1.6.3' });
    await annotate('referencegrants', { 'gateway.networking.k8s.io/channel': 'standard' });
    await annotate('grpcroutes', { [BUNDLE]: 'v1.2.0' });
    await annotate('httproutes', { [BUNDLE]: 'v1.2.0' });
    await annotate('referencegrants', { [BUNDLE]: 'v1.2.0' });
    c = await tsmesh('check');
    assert.match(c.out, /\[warn\] Gateway API CRDs are at bundle-version v1\.2\.0, older than v1\.6\.3: route fields of newer releases are not served\n {9}fix: tsmesh install/);
    assert.equal((await tsmesh('install', '--trust-domain', 'mesh.example')).code, 0);
    for (const crd of ['httproutes', 'grpcroutes', 'referencegrants']) assert.equal(await version(crd), 'v1.6.3');
  });

  it('--wait says why the control plane is not ready (this tier has no kubelet)', async function () {
    const r = await tsmesh('install', '--trust-domain', 'mesh.example', '--wait', '3s');
    assert.equal(r.code, 1);
    assert.match(r.err, /^tsmesh install: the control plane is not ready after 3s: .*; see kubectl -n tsmesh-system describe deployment tsmesh-control-plane/m);
  });

  it('running it again upgrades in place: the CA and the settings users changed are kept', async function () {
    const before = await rootPem();
    await kube.request('PATCH', CONFIG, { body: { data: { mtlsMode: 'PERMISSIVE' } }, contentType: 'application/merge-patch+json', query: { fieldManager: 'kubectl-edit' } });
    const r = await tsmesh('install', '--trust-domain', 'mesh.example');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^Secret tsmesh-system\/tsmesh-ca kept \(the mesh CA already in the cluster\)$/m);
    assert.equal(await rootPem(), before);
    const d = (await kube.get<{ spec: { template: { spec: { containers: { image: string; args: string[] }[] } } } }>(DEPLOYMENT))!;
    assert.match(d.spec.template.spec.containers[0]!.image, /^ghcr\.io\/tsmesh\/tsmesh:/, 'install owns the fields it renders');
    assert.ok(!d.spec.template.spec.containers[0]!.args.some((a) => a.startsWith('--proxy-image')));
    assert.equal((await kube.get<{ webhooks: { failurePolicy: string }[] }>(WEBHOOK))!.webhooks[0]!.failurePolicy, 'Fail');
    assert.deepEqual((await kube.get<{ data: Record<string, string> }>(CONFIG))!.data, { trustDomain: 'mesh.example', mtlsMode: 'PERMISSIVE' });
  });

  it('--ca-dir replaces the CA only when the new root-cert.pem keeps the old roots', async function () {
    const old = await rootPem();
    const next = await createRootCa('mesh.example');
    const bad = join(dir, 'bad');
    await writeRootCa(bad, next);
    let r = await tsmesh('install', '--trust-domain', 'mesh.example', '--ca-dir', bad);
    assert.equal(r.code, 1);
    assert.match(r.err, /Secret tsmesh-system\/tsmesh-ca holds a root that --ca-dir's root-cert\.pem leaves out .*Rotate in steps: put the old and the new root together in root-cert\.pem/);
    assert.equal(await rootPem(), old, 'the Secret is untouched');

    const good = join(dir, 'good');
    await writeRootCa(good, next);
    writeFileSync(join(good, CA_FILES.rootCert), next.certPem + old);
    r = await tsmesh('install', '--trust-domain', 'mesh.example', '--ca-dir', good);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^Secret tsmesh-system\/tsmesh-ca replaced from --ca-dir; every control plane replica takes the new material once kubelet updates its mounted Secret \(no restart\)$/m);
    assert.equal(await rootPem(), readFileSync(join(good, CA_FILES.rootCert), 'utf8'));
    r = await tsmesh('install', '--trust-domain', 'mesh.example', '--ca-dir', good);
    assert.match(r.out, /^Secret tsmesh-system\/tsmesh-ca unchanged$/m);

    // A root rotation in progress in the Secret is not dropped by an install from a folder without it.
    r = await tsmesh('ca', 'rotate', 'start', '--trust-domain', 'mesh.example');
    assert.equal(r.code, 0, r.out + r.err);
    const rotating = await rootPem();
    r = await tsmesh('install', '--trust-domain', 'mesh.example', '--ca-dir', good);
    assert.equal(r.code, 1);
    assert.match(r.err, /holds a root rotation in progress \(rotation.json\) that --ca-dir does not carry/);
    assert.equal(await rootPem(), rotating, 'the Secret is untouched');
  });

  it('prints manifests (--dry-run, with flags) that the API server accepts as they are', async function () {
    const r = await tsmesh('install', '--dry-run', '--image', 'tsmesh:kind', '--cert-ttl', '2h', '--failure-policy', 'Ignore');
    assert.equal(r.code, 0, r.err);
    for (const doc of parseAllDocuments(r.out, { version: '1.1' })) {
      const obj = doc.toJS() as KubeObject | null;
      if (!obj) continue;
      const res = await kube.apply(obj, { dryRun: true, fieldManager: 'kubectl' });
      assert.deepEqual(res.warnings, [], `${obj.kind} ${obj.metadata.name}`);
    }
  });

  it('uninstall --dry-run deletes nothing; uninstall removes the webhook first, the control plane, its CA and trust bundles, and keeps the CRDs', async function () {
    await createNamespace(server!.kc, 'shop', { 'tsmesh.io/inject': 'enabled' });
    await kube.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'tsmesh-trust-bundle', namespace: 'shop', labels: { 'app.kubernetes.io/managed-by': 'tsmesh', 'app.kubernetes.io/part-of': 'tsmesh' } }, data: { 'root-cert.pem': 'x' } });
    let r = await tsmesh('uninstall', '--dry-run');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^MutatingWebhookConfiguration tsmesh-sidecar-injector deleted \(server dry run\)$/m);
    for (const path of [WEBHOOK, DEPLOYMENT, SECRET, '/api/v1/namespaces/shop/configmaps/tsmesh-trust-bundle']) assert.ok(await kube.get(path), `${path} is still there`);

    r = await tsmesh('uninstall');
    assert.equal(r.code, 0, r.out + r.err);
    const lines = r.out.split('\n');
    assert.equal(lines[1], 'MutatingWebhookConfiguration tsmesh-sidecar-injector deleted', 'the webhook goes first');
    assert.match(r.out, /^ConfigMap shop\/tsmesh-trust-bundle deleted$/m);
    assert.match(r.out, /^kept the CRDs \(trafficpolicies\.tsmesh\.io, authorizationpolicies\.tsmesh\.io\) and the policies in them; --crds deletes them too$/m);
    assert.match(r.out, /^namespace shop is still labelled tsmesh\.io\/inject=enabled: kubectl label namespace shop tsmesh\.io\/inject-$/m);
    for (const path of [WEBHOOK, DEPLOYMENT, SECRET, '/api/v1/namespaces/shop/configmaps/tsmesh-trust-bundle', '/apis/rbac.authorization.k8s.io/v1/clusterroles/tsmesh-control-plane'])
      assert.equal(await kube.get(path), undefined, `${path} is gone`);
    await eventually(async () => ((await kube.get(`/api/v1/namespaces/${NS}`)) === undefined ? true : undefined), 60_000, 'namespace tsmesh-system to be gone');
    assert.ok(await kube.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trafficpolicies.tsmesh.io'));

    r = await tsmesh('uninstall', '--crds');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^CustomResourceDefinition trafficpolicies\.tsmesh\.io deleted$/m);
    assert.match(r.out, /^kept the Gateway API CRDs \(httproutes\.gateway\.networking\.k8s\.io, grpcroutes\.gateway\.networking\.k8s\.io, referencegrants\.gateway\.networking\.k8s\.io\) and the routes in them: other controllers in the cluster may use them$/m);
    assert.ok(await kube.get(`${CRDS}/httproutes.gateway.networking.k8s.io`), 'uninstall --crds leaves the Gateway API CRDs');
    assert.match(r.out, /^Deployment tsmesh-system\/tsmesh-control-plane not found$/m);
    await eventually(async () => ((await kube.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trafficpolicies.tsmesh.io')) === undefined ? true : undefined), 30_000, 'the CRDs to be gone');
  });
});
