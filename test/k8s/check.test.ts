// `tsmesh check` against a real kube-apiserver, for a healthy install and for
// broken ones (expired or expiring root, webhook missing, control plane or
// proxy not ready, a proxy certificate not renewed).
//
// What "healthy" means on this tier: there is no kubelet and no scheduler,
// so nothing runs from the Deployment. The test runs the real control plane
// (`tsmesh control-plane`, with its ServiceAccount's token and the CA of the
// installed Secret) on loopback and creates what kubelet and the controllers
// would: a Pod object for it with a ready status, the EndpointSlice of its
// Service, the Deployment's status. The API server reaches the processes
// through its own egress path (cluster-network.ts): the webhook call for a
// new pod (Service ClusterIP, TLS verified against the caBundle the control
// plane set), the service proxy to /readyz and /inject, the pod proxy to a
// proxy's /metrics. So the test proves that check reads the objects a real
// cluster has and reaches the control plane and proxies the way it would
// there; it cannot prove that kubelet reports those statuses as patched here,
// nor anything about pod networking.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { CA_FILES } from '../../ca/material.js';
import { createRootCa } from '../../ca/root.js';
import { applyInstall } from '../../install/apply.js';
import { caSecret, generateCa, type CaMaterial } from '../../install/ca.js';
import type { CheckLine } from '../../install/check/report.js';
import { runChecks } from '../../install/check/run.js';
import { Kube, type KubeObject } from '../../install/kube.js';
import { renderInstall } from '../../install/render.js';
import { createIdentityMetrics } from '../../proxy/identity/metrics.js';
import { createProxyMetrics } from '../../proxy/metrics.js';
import { freePort } from '../../lib/ports.js';
import { createNamespace, createServiceAccount, eventually, requestToken, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { startClusterNetwork, type ClusterNetwork } from './cluster-network.js';
import { kubeConfigWithToken } from './manifests.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts');
const NS = 'tsmesh-system';
const CP_POD_IP = '10.244.0.10';
const WEB_POD_IP = '10.244.1.5';

const failures = (lines: CheckLine[]): CheckLine[] => lines.filter((l) => l.status === 'fail');
const show = (lines: CheckLine[]): string => lines.map((l) => `${l.status} ${l.section}: ${l.message}${l.fix ? ` (fix: ${l.fix})` : ''}`).join('\n');

describe('tsmesh check (real kube-apiserver, the control plane on loopback behind the API server\'s cluster egress)', function () {
  this.timeout(180_000);
  let network: ClusterNetwork | undefined;
  let server: ApiServer | undefined;
  let kube: Kube;
  let dir: string | undefined;
  let child: ChildProcess | undefined;
  let stderr = '';
  let ca: CaMaterial;
  let proxyAdmin: Server | undefined;
  let certExpiry: (seconds: number) => void;

  const status = (path: string, body: unknown): Promise<unknown> => kube.request('PATCH', `${path}/status`, { body, contentType: 'application/merge-patch+json' });
  const check = (): Promise<CheckLine[]> => runChecks(kube, { timeoutMs: 10_000 });
  // Not spawnSync: the stand-in network runs in this process and must keep serving meanwhile.
  const cli = async (): Promise<{ code: number | null; out: string; err: string }> => {
    const p = spawn(process.execPath, ['--import', 'tsx', MAIN, 'check', '--kubeconfig', server!.kubeconfigPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(p, 'exit')) as [number | null];
    return { code, out, err };
  };
  const deploymentPath = `/apis/apps/v1/namespaces/${NS}/deployments/tsmesh-control-plane`;
  const readyDeployment = async (available: number): Promise<void> => {
    const d = (await kube.get<{ metadata: { generation: number } }>(deploymentPath))!;
    await status(deploymentPath, { status: { observedGeneration: d.metadata.generation, replicas: 2, updatedReplicas: 2, readyReplicas: available, availableReplicas: available } });
  };
  const webStatus = (proxyReady: boolean) => ({
    status: {
      phase: 'Running',
      podIP: WEB_POD_IP,
      podIPs: [{ ip: WEB_POD_IP }],
      conditions: [{ type: 'Ready', status: proxyReady ? 'True' : 'False' }],
      initContainerStatuses: [
        { name: 'tsmesh-init', ready: false, restartCount: 0, image: 'tsmesh', imageID: '', state: { terminated: { exitCode: 0, reason: 'Completed' } } },
        { name: 'tsmesh-proxy', ready: proxyReady, started: true, restartCount: proxyReady ? 0 : 3, image: 'tsmesh', imageID: '', state: proxyReady ? { running: {} } : { waiting: { reason: 'CrashLoopBackOff' } } },
      ],
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'app', imageID: '', state: { running: {} } }],
    },
  });

  before(async function () {
    skipWithoutApiServer(this);
    network = await startClusterNetwork();
    server = await startApiServer({ extraArgs: network.apiServerArgs });
    kube = new Kube(server.kc);

    // tsmesh install, as the library does it for the CLI.
    ca = await generateCa('cluster.local');
    await applyInstall(kube, renderInstall({ ca }), ca, () => {});

    // The control plane, with the installed CA and its own ServiceAccount's token.
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-check-'));
    for (const [name, pem] of Object.entries(ca.files)) writeFileSync(join(dir, name), pem, { mode: 0o600 });
    const { token } = await requestToken(server.kc, NS, 'tsmesh-control-plane', 'https://kubernetes.default.svc.cluster.local', 3600);
    writeFileSync(join(dir, 'kubeconfig'), kubeConfigWithToken(server.kc, token, 'tsmesh-control-plane').exportConfig());
    const ports = { ca: await freePort(), admin: await freePort(), webhook: await freePort() };
    child = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, 'control-plane', '--ca-dir', dir, '--kubeconfig', join(dir, 'kubeconfig'), '--host', '127.0.0.1', '--no-scrape',
        '--port', String(ports.ca), '--admin-port', String(ports.admin), '--webhook-port', String(ports.webhook)],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));

    // What kubelet and the controllers would make: the control plane's pod, its endpoints, the Deployment's status.
    const deployment = (await kube.get<{ spec: { template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } } }>(deploymentPath))!;
    const cpPod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'tsmesh-control-plane-0', namespace: NS, labels: deployment.spec.template.metadata.labels },
      spec: deployment.spec.template.spec,
    };
    await kube.create(cpPod);
    await status(`/api/v1/namespaces/${NS}/pods/tsmesh-control-plane-0`, {
      status: {
        phase: 'Running',
        podIP: CP_POD_IP,
        podIPs: [{ ip: CP_POD_IP }],
        conditions: [{ type: 'Ready', status: 'True' }],
        containerStatuses: [{ name: 'control-plane', ready: true, restartCount: 0, image: 'tsmesh', imageID: '', state: { running: {} } }],
      },
    });
    await kube.create({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'tsmesh-control-plane-test', namespace: NS, labels: { 'kubernetes.io/service-name': 'tsmesh-control-plane' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [CP_POD_IP], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: NS, name: 'tsmesh-control-plane-0' } }],
      ports: [
        { name: 'https-ca', port: 15012, protocol: 'TCP' },
        { name: 'http-admin', port: 15014, protocol: 'TCP' },
        { name: 'https-webhook', port: 9443, protocol: 'TCP' },
      ],
    });
    await readyDeployment(2);
    const service = (await kube.get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${NS}/services/tsmesh-control-plane`))!;
    network.route(`${CP_POD_IP}:15012`, ports.ca);
    network.route(`${CP_POD_IP}:15014`, ports.admin);
    network.route(`${CP_POD_IP}:9443`, ports.webhook);
    network.route(`${service.spec.clusterIP}:9443`, ports.webhook);

    await eventually(async () => {
      const r = await request(`http://127.0.0.1:${ports.admin}/readyz`).catch(() => undefined);
      await r?.body.dump();
      return r?.statusCode === 200 ? true : undefined;
    }, 60_000, 'the control plane to be ready').catch((e: Error) => assert.fail(`${e.message}\n${stderr}`));

    // A meshed namespace and a pod in it, injected by the real webhook through the API server.
    await createNamespace(server.kc, 'shop', { 'tsmesh.io/inject': 'enabled' });
    await createServiceAccount(server.kc, 'shop', 'default');
    await eventually(() => kube.get(`/api/v1/namespaces/shop/configmaps/tsmesh-trust-bundle`), 30_000, 'the trust bundle in shop');
    await eventually(async () => {
      const w = await kube.get<{ webhooks: { clientConfig: { caBundle?: string } }[] }>('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tsmesh-sidecar-injector');
      return w?.webhooks[0]?.clientConfig.caBundle ? true : undefined;
    }, 30_000, 'the caBundle');
    const web = (await kube.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } },
      spec: { containers: [{ name: 'app', image: 'registry.example/web:1', ports: [{ containerPort: 8080 }] }] },
    })).body as { spec: { initContainers?: { name: string }[] } };
    assert.deepEqual(web.spec.initContainers?.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy'], 'the webhook, called by the API server, injected the pod');
    await status('/api/v1/namespaces/shop/pods/web', webStatus(true));

    // The proxy's admin port: its real metric families, at the pod's address.
    const registry = new Registry();
    createProxyMetrics(registry);
    const identity = createIdentityMetrics(registry);
    certExpiry = (seconds) => identity.certExpiration.set(seconds);
    certExpiry(Date.now() / 1000 + 50 * 60);
    proxyAdmin = createServer((req, res) => {
      if (req.url === '/metrics') void registry.metrics().then((t) => res.writeHead(200, { 'content-type': registry.contentType }).end(t));
      else res.writeHead(404).end();
    }).listen(0, '127.0.0.1');
    await new Promise((r) => proxyAdmin!.once('listening', r));
    network.route(`${WEB_POD_IP}:15020`, (proxyAdmin.address() as AddressInfo).port);
  });

  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    proxyAdmin?.close();
    await server?.stop();
    await network?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes a healthy install: exit 0, and every part is reached through the API server', async function () {
    const r = await cli();
    assert.equal(r.code, 0, `${r.out}\n${r.err}\n${stderr}`);
    assert.match(r.out, /tsmesh check: healthy/);
    const lines = await check();
    assert.deepEqual(lines.filter((l) => l.status !== 'ok'), [], show(lines));
    const text = show(lines);
    for (const want of [
      /Kubernetes v1\.\d+/,
      /Deployment tsmesh-control-plane: 2\/2 replicas available/,
      /Service tsmesh-control-plane has 1 ready endpoint/,
      /answers \/readyz: ready/,
      /root O=tsmesh, CN=tsmesh root CA cluster\.local valid until \d{4}-\d\d-\d\d \((3649|3650) days\)/,
      /workload certificates are signed by the root/,
      /caBundle set to the mesh roots/,
      /the injector answers and adds the proxy/,
      /a pod created in namespace shop \(server dry run\) gets tsmesh-init and tsmesh-proxy/,
      /namespace shop: 1 meshed pod, every proxy ready/,
      /1 proxy holds a certificate with at least (49|50)m left/,
    ])
      assert.match(text, want);
    // The API server went through the stand-in network for the webhook, the service proxy and the pod proxy.
    const routed = new Set(network!.seen.filter((s) => s.routed).map((s) => s.address));
    assert.ok(routed.has(`${WEB_POD_IP}:15020`) && routed.has(`${CP_POD_IP}:15014`), JSON.stringify(network!.seen));
  });

  it('fails a proxy whose certificate was not renewed, and a proxy that is not ready, saying how to fix each', async function () {
    certExpiry(Date.now() / 1000 + 5 * 60);
    let lines = await check();
    assert.deepEqual(
      failures(lines).map((l) => [l.message.replace(/in \d+s|in \dm/, 'in N'), l.fix]),
      [['pod shop/web: the proxy\'s certificate expires in N; proxies renew at half-life, so renewal is failing', 'kubectl -n shop logs web -c tsmesh-proxy (renewal errors), and the CA lines above']],
      show(lines),
    );
    certExpiry(Date.now() / 1000 - 60);
    assert.match(show(failures(await check())), /certificate EXPIRED/);
    certExpiry(Date.now() / 1000 + 50 * 60);

    await status('/api/v1/namespaces/shop/pods/web', webStatus(false));
    lines = await check();
    assert.deepEqual(
      failures(lines).map((l) => [l.message, l.fix]),
      [['pod shop/web: proxy not ready (CrashLoopBackOff, 3 restarts)', 'kubectl -n shop logs web -c tsmesh-proxy; kubectl -n shop describe pod web']],
      show(lines),
    );
    await status('/api/v1/namespaces/shop/pods/web', webStatus(true));
  });

  it('fails a control plane with no available replica, and warns when only some are', async function () {
    await readyDeployment(0);
    let lines = await check();
    assert.match(show(failures(lines)), /Deployment tsmesh-control-plane: no replica is available .*fix: kubectl -n tsmesh-system describe deployment tsmesh-control-plane/);
    await readyDeployment(1);
    lines = await check();
    assert.deepEqual(failures(lines), [], show(lines));
    assert.match(show(lines), /warn Control plane: Deployment tsmesh-control-plane: 1 of 2 replicas available/);
    await readyDeployment(2);
  });

  it('fails an expired root, and a root that expires within 30 days, with how to rotate it', async function () {
    const secretPath = `/api/v1/namespaces/${NS}/secrets/tsmesh-ca`;
    const replaceRoot = async (files: CaMaterial['files']): Promise<void> => {
      const current = (await kube.get<KubeObject>(secretPath))!;
      const next = caSecret(files);
      next.metadata.resourceVersion = current.metadata.resourceVersion!;
      await kube.replace(next);
    };
    try {
      const expired = await createRootCa('cluster.local', 365, new Date(Date.now() - 400 * 86_400_000));
      await replaceRoot({ [CA_FILES.rootCert]: expired.certPem, [CA_FILES.rootKey]: expired.keyPem });
      let lines = await check();
      const root = failures(lines).find((l) => l.section === 'CA');
      assert.match(root?.message ?? '', /^root O=tsmesh, CN=tsmesh root CA cluster\.local EXPIRED on \d{4}-\d\d-\d\d: proxies cannot get or verify certificates$/, show(lines));
      assert.match(root?.fix ?? '', /tsmesh ca init --out new-ca.*tsmesh install --ca-dir new-ca/);
      // The injector's caBundle still holds the old root: that is reported too.
      assert.match(show(failures(lines)), /caBundle is not the mesh's roots/);
      const r = await cli();
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /\[FAIL\] root .* EXPIRED on/);
      assert.match(r.out, /tsmesh check: FAILED/);

      const soon = await createRootCa('cluster.local', 10);
      await replaceRoot({ [CA_FILES.rootCert]: soon.certPem, [CA_FILES.rootKey]: soon.keyPem });
      lines = await check();
      assert.match(show(failures(lines)), /fail CA: root O=tsmesh, CN=tsmesh root CA cluster\.local expires in (9|10) days \(\d{4}-\d\d-\d\d\)/);
    } finally {
      await replaceRoot(ca.files);
    }
    assert.deepEqual(failures(await check()), []);
  });

  it('fails when the webhook configuration is missing, and says to run tsmesh install', async function () {
    await kube.request('DELETE', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tsmesh-sidecar-injector');
    const lines = await check();
    const failed = failures(lines);
    assert.deepEqual(
      failed.map((l) => l.message),
      ['MutatingWebhookConfiguration tsmesh-sidecar-injector is missing: new pods are not injected', 'a pod created in namespace shop (server dry run) is not injected'],
      show(lines),
    );
    assert.equal(failed[0]!.fix, 'tsmesh install');
    assert.match(failed[1]!.fix ?? '', /^kubectl get mutatingwebhookconfiguration tsmesh-sidecar-injector -o yaml/);
    const r = await cli();
    assert.equal(r.code, 1);
    assert.match(r.out, /\[FAIL\] MutatingWebhookConfiguration tsmesh-sidecar-injector is missing: new pods are not injected\n {9}fix: tsmesh install\n/);
  });
});
