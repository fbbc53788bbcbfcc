// A live root rotation through Secret tsmesh-ca against a real kube-apiserver:
// `tsmesh ca rotate start` and `finish` (the CLI, with the admin's
// kubeconfig) change the Secret, and `tsmesh control-plane` (its own RBAC,
// its CA folder the Secret's projection) takes each change without a restart:
// the trust-bundle ConfigMap of a meshed namespace and the injector's
// caBundle hold both roots, then the new one alone.
//
// This tier has no kubelet: the Secret reaches the control plane's folder as
// kubelet's atomic writer puts a Secret volume there (the files in a
// timestamped folder, `..data` a symlink swapped by rename, each file a
// symlink through it), by polling the Secret through the API. That stand-in
// is the one fake here; test/node runs a real kubelet.
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { splitPemCertificates } from '../../ca/der.js';
import { createRootCa } from '../../ca/root.js';
import { CA_FILES, CA_FILE_NAMES } from '../../ca/material.js';
import { caFilesFromSecret, caSecret } from '../../install/ca.js';
import { freePort } from '../../lib/ports.js';
import { createNamespace, eventually, requestToken, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { applyOrder, kubeConfigWithToken, readManifests, serverSideApply } from './manifests.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts');
const run = promisify(execFile);
const roots = (pem: string | undefined): string[] => splitPemCertificates(pem ?? '').map((p) => new X509Certificate(p).fingerprint256);

/** Projects Secret tsmesh-ca into `dir` as kubelet does a Secret volume, whenever its resourceVersion changes. */
function projectSecret(server: ApiServer, dir: string): { stop(): void; synced(): Promise<void> } {
  const core = server.kc.makeApiClient(CoreV1Api);
  let version = '';
  let generation = 0;
  let stopped = false;
  const once = async (): Promise<void> => {
    const secret = await core.readNamespacedSecret({ namespace: 'tsmesh-system', name: 'tsmesh-ca' });
    if (secret.metadata?.resourceVersion === version) return;
    const files = caFilesFromSecret({ data: secret.data });
    const ts = join(dir, `..${Date.now()}_${generation++}`);
    mkdirSync(ts);
    for (const [name, pem] of Object.entries(files)) writeFileSync(join(ts, name), pem, { mode: 0o644 });
    const old = existsSync(join(dir, '..data')) ? readlinkSync(join(dir, '..data')) : undefined;
    symlinkSync(ts.slice(dir.length + 1), join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    for (const name of CA_FILE_NAMES) {
      const link = join(dir, name);
      if (files[name] !== undefined && !existsSync(link)) symlinkSync(join('..data', name), link);
      if (files[name] === undefined) rmSync(link, { force: true });
    }
    if (old) rmSync(join(dir, old), { recursive: true, force: true });
    version = secret.metadata?.resourceVersion ?? '';
  };
  let last: Promise<void> = once();
  const timer = setInterval(() => {
    if (!stopped) last = last.then(once).catch(() => undefined);
  }, 200);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
    synced: () => last,
  };
}

describe('tsmesh ca rotate through Secret tsmesh-ca (real kube-apiserver, the control plane live)', function () {
  this.timeout(240_000);
  let server: ApiServer | undefined;
  let dir: string;
  let child: ChildProcess | undefined;
  let projection: ReturnType<typeof projectSecret> | undefined;
  let stderr = '';
  let ports: { ca: number; admin: number; webhook: number };
  let adminKubeconfig: string;

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    ports = { ca: await freePort(), admin: await freePort(), webhook: await freePort() };
    for (const doc of applyOrder(readManifests())) {
      const object = doc.object as { kind?: string; webhooks?: { clientConfig: Record<string, unknown> }[] };
      if (object.kind === 'MutatingWebhookConfiguration')
        for (const w of object.webhooks ?? []) w.clientConfig = { url: `https://127.0.0.1:${ports.webhook}/inject` };
      await serverSideApply(server.kc, doc.object);
    }
    await createNamespace(server.kc, 'shop', { 'tsmesh.io/inject': 'enabled' });
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-rotate-k8s-'));
    const root = await createRootCa('cluster.local');
    await server.kc.makeApiClient(CoreV1Api).createNamespacedSecret({
      namespace: 'tsmesh-system',
      body: caSecret({ [CA_FILES.rootCert]: root.certPem, [CA_FILES.rootKey]: root.keyPem }) as never,
    });
    const caDir = join(dir, 'ca');
    mkdirSync(caDir);
    projection = projectSecret(server, caDir);
    await projection.synced();
    adminKubeconfig = join(dir, 'admin-kubeconfig');
    writeFileSync(adminKubeconfig, server.kc.exportConfig());
    const { token } = await requestToken(server.kc, 'tsmesh-system', 'tsmesh-control-plane', 'https://kubernetes.default.svc.cluster.local', 3600);
    writeFileSync(join(dir, 'kubeconfig'), kubeConfigWithToken(server.kc, token, 'tsmesh-control-plane').exportConfig());
    child = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, 'control-plane', '--ca-dir', caDir, '--kubeconfig', join(dir, 'kubeconfig'), '--host', '127.0.0.1', '--no-scrape',
        '--port', String(ports.ca), '--admin-port', String(ports.admin), '--webhook-port', String(ports.webhook)],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  });
  after(async () => {
    projection?.stop();
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const trustBundleConfigMap = async (): Promise<string[]> => {
    try {
      const cm = await server!.kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: 'shop', name: 'tsmesh-trust-bundle' });
      return roots(cm.data?.['root-cert.pem']);
    } catch {
      return [];
    }
  };
  const caBundle = async (): Promise<string[]> => {
    const w = await server!.kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: 'tsmesh-sidecar-injector' });
    const b = w.webhooks?.[0]?.clientConfig.caBundle;
    return b ? roots(Buffer.from(b, 'base64').toString()) : [];
  };
  const secretRoots = async (): Promise<string[]> =>
    roots(caFilesFromSecret(await server!.kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: 'tsmesh-system', name: 'tsmesh-ca' }))[CA_FILES.rootCert]);
  const tsmesh = (...args: string[]) => run(process.execPath, ['--import', 'tsx', MAIN, ...args, '--kubeconfig', adminKubeconfig], { timeout: 120_000 });

  it('puts both roots, then the new one alone, into the ConfigMaps and the caBundle, without a restart', async () => {
    const [oldRoot] = await secretRoots();
    const same = (want: string[]) => async (get: () => Promise<string[]>) => ((await get()).join() === want.join() ? true : undefined);
    const has = same([oldRoot!]);
    await eventually(() => has(trustBundleConfigMap), 60_000, 'the ConfigMap with the first root').catch((e: Error) => assert.fail(`${e.message}\n${stderr}`));
    await eventually(() => has(caBundle), 20_000, 'the caBundle with the first root');

    const started = await tsmesh('ca', 'rotate', 'start', '--overlap', '1s');
    assert.match(started.stdout, /starting a root rotation in Secret tsmesh-system\/tsmesh-ca: new root/);
    const both = await secretRoots();
    assert.equal(both.length, 2);
    const newRoot = both[1]!;
    const hasBoth = same([oldRoot!, newRoot]);
    await eventually(() => hasBoth(trustBundleConfigMap), 30_000, 'the ConfigMap with both roots').catch((e: Error) => assert.fail(`${e.message}\n${stderr}`));
    await eventually(() => hasBoth(caBundle), 30_000, 'the caBundle with both roots');

    const status = await tsmesh('ca', 'rotate', 'status', '--admin-address', `127.0.0.1:${ports.admin}`);
    assert.match(status.stdout, /rotation in progress since/);
    assert.match(status.stdout, new RegExp(`root ${newRoot}  new`));

    const finished = await tsmesh('ca', 'rotate', 'finish', '--admin-address', `127.0.0.1:${ports.admin}`, '--wait', '60s');
    assert.match(finished.stdout, /finishing the root rotation/);
    assert.deepEqual(await secretRoots(), [newRoot]);
    const hasNew = same([newRoot]);
    await eventually(() => hasNew(trustBundleConfigMap), 30_000, 'the ConfigMap with the new root alone').catch((e: Error) => assert.fail(`${e.message}\n${stderr}`));
    await eventually(() => hasNew(caBundle), 30_000, 'the caBundle with the new root alone');
    assert.equal(child!.exitCode, null, 'the control plane ran through without a restart');
  });
});
