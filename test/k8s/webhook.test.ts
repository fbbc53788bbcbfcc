// The injector against a real kube-apiserver: registered by URL with the
// selectors of manifests/webhook.yaml and the caBundle of the mesh's root,
// serving from a certificate our CA issued for 127.0.0.1. The API server
// validates every patched pod against the Kubernetes schema before storing it.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { silentLogger } from '../../lib/log.js';
import { startWebhookServer, WEBHOOK_PATH, type RunningWebhook } from '../../webhook/app.js';
import { applyPodPatch, injectManifests } from '../../webhook/manifests.js';
import { asPod, fixtureNames, injectFixture, loadFixture, TEST_MESH, TEST_VERSION } from '../../webhook/testdata/fixtures.js';
import { webhookServingCertificate, type ServingMaterial } from '../../webhook/testdata/tls.js';
import {
  createNamespace,
  createServiceAccount,
  eventually,
  registerMutatingWebhook,
  startApiServer,
  type ApiServer,
  type MutatingWebhookOptions,
  skipWithoutApiServer,
} from './apiserver.js';

const here = dirname(fileURLToPath(import.meta.url));
const WEBHOOK_NAME = 'inject.tsmesh.io';

/** The one webhook of manifests/webhook.yaml: its selectors and policies are the ones under test. */
function manifestWebhook(): Record<string, any> {
  const doc = parse(readFileSync(resolve(here, '..', '..', 'manifests', 'webhook.yaml'), 'utf8'), { version: '1.1' }) as Record<string, any>;
  assert.equal(doc['kind'], 'MutatingWebhookConfiguration');
  const hook = doc['webhooks'][0];
  assert.equal(hook.name, WEBHOOK_NAME);
  return hook;
}

/** What the API server said when it refused a request. */
function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  return (err as Error).message;
}

/** Plain JSON: the client's model classes compare unequal to object literals. */
const json = <T>(x: T): T => JSON.parse(JSON.stringify(x ?? null)) as T;

/** The proxy's env with TSMESH_APP_PROBES parsed, minus what the API server defaults before the webhook sees a probe (timeout 1 s, scheme HTTP). */
function proxyEnv(pod: V1Pod): unknown {
  return json(pod.spec?.initContainers?.[1]?.env ?? []).map((e) => {
    if (e.name !== 'TSMESH_APP_PROBES') return e;
    const probes = JSON.parse(e.value!) as Record<string, { timeoutSeconds?: number; httpGet?: { scheme?: string } }>;
    for (const p of Object.values(probes)) {
      if (p.timeoutSeconds === 1) delete p.timeoutSeconds;
      if (p.httpGet?.scheme === 'HTTP') delete p.httpGet.scheme;
    }
    return { name: e.name, probes };
  });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return apiMessage(e);
  }
  assert.fail('the API server accepted the request');
}

/** A workload's template as a Pod, with an emptyDir for each volume a controller would add (volumeClaimTemplates). */
function standalonePod(fixture: string, name: string, namespace: string): V1Pod {
  const pod = asPod(loadFixture(fixture), name) as V1Pod;
  pod.metadata!.namespace = namespace;
  const spec = pod.spec!;
  const have = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const m of c.volumeMounts ?? []) {
      if (have.has(m.name)) continue;
      spec.volumes = [...(spec.volumes ?? []), { name: m.name, emptyDir: {} }];
      have.add(m.name);
    }
  }
  return pod;
}

describe('webhook with a real kube-apiserver', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  let webhook: RunningWebhook | undefined;
  let tls: ServingMaterial;
  let core: CoreV1Api;
  const meshed = 'meshed';
  const plain = 'plain';

  before(async function () {
    skipWithoutApiServer(this);
    tls = await webhookServingCertificate();
    webhook = await startWebhookServer({ mesh: TEST_MESH, version: TEST_VERSION, registry: new Registry(), log: silentLogger, tls, host: '127.0.0.1', port: 0 });
    server = await startApiServer();
    core = server.kc.makeApiClient(CoreV1Api);
    const hook = manifestWebhook();
    const options: MutatingWebhookOptions = {
      name: WEBHOOK_NAME,
      url: `https://127.0.0.1:${webhook.port}${WEBHOOK_PATH}`,
      caBundle: tls.ca,
      namespaceSelector: hook.namespaceSelector,
      objectSelector: hook.objectSelector,
      rules: hook.rules,
      failurePolicy: hook.failurePolicy,
      timeoutSeconds: hook.timeoutSeconds,
      reinvocationPolicy: hook.reinvocationPolicy,
    };
    await registerMutatingWebhook(server.kc, options);
    await createNamespace(server.kc, meshed, { 'tsmesh.io/inject': 'enabled' });
    await createNamespace(server.kc, plain);
    // No controller manager: the ServiceAccount admission plugin wants the accounts to exist.
    for (const ns of [meshed, plain, 'kube-public']) await createServiceAccount(server.kc, ns, 'default');
    await createServiceAccount(server.kc, meshed, 'shop');
    // The API server picks up a new webhook configuration within a moment.
    await eventually(async () => {
      const p = await core.createNamespacedPod({ namespace: meshed, body: standalonePod('job', 'warm-up', meshed), dryRun: 'All' });
      return p.metadata?.annotations?.['tsmesh.io/status'] ? true : undefined;
    }, 15_000, 'the webhook to inject pods');
  });

  after(async function () {
    await webhook?.close();
    await server?.stop();
  });

  it('stores a pod of a labelled namespace with tsmesh-init and tsmesh-proxy first', async function () {
    const created = await core.createNamespacedPod({ namespace: meshed, body: standalonePod('pod-with-init-containers', 'billing-api', meshed) });
    const stored = await core.readNamespacedPod({ namespace: meshed, name: 'billing-api' });
    assert.equal(created.metadata?.uid, stored.metadata?.uid);
    const init = stored.spec?.initContainers ?? [];
    assert.deepEqual(init.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy', 'wait-for-db', 'migrate']);
    assert.equal(init[1]!.restartPolicy, 'Always');
    assert.equal(init[1]!.startupProbe?.httpGet?.path, '/ready');
    assert.deepEqual(json(init[0]!.securityContext?.capabilities), { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    const volumes = (stored.spec?.volumes ?? []).map((v) => v.name);
    for (const v of ['config', 'tsmesh-token', 'tsmesh-trust-bundle', 'tsmesh-xtables-lock']) assert.ok(volumes.includes(v), `volumes: ${volumes.join(', ')}`);
    const token = stored.spec?.volumes?.find((v) => v.name === 'tsmesh-token')?.projected?.sources?.[0]?.serviceAccountToken;
    assert.equal(token?.audience, 'tsmesh-ca');
    assert.equal(JSON.parse(stored.metadata?.annotations?.['tsmesh.io/status'] ?? '{}').version, TEST_VERSION);
    assert.equal(stored.spec?.containers[0]?.readinessProbe?.httpGet?.path, '/app-health/api/readyz');
  });

  // Every injected golden fixture, created as a pod: the API server validates the whole patched spec.
  for (const name of fixtureNames().filter((n) => injectFixture(loadFixture(n)).injected)) {
    it(`accepts the injected ${name} pod, as the golden patch says`, async function () {
      const podName = `golden-${name}`;
      const stored = await core.createNamespacedPod({ namespace: meshed, body: standalonePod(name, podName, meshed) });
      const expected = standalonePod(name, podName, meshed);
      applyPodPatch(expected as Record<string, any>, injectFixture(loadFixture(name)).injected!.patch);
      const names = (p: V1Pod) => (p.spec?.initContainers ?? []).map((c) => c.name);
      assert.deepEqual(names(stored), names(expected));
      const [init, proxy] = stored.spec!.initContainers!;
      const [wantInit, wantProxy] = expected.spec!.initContainers!;
      assert.deepEqual(init!.args, wantInit!.args);
      assert.deepEqual(proxyEnv(stored), proxyEnv(expected));
      assert.deepEqual(json(proxy!.resources), wantProxy!.resources);
      assert.deepEqual(json(proxy!.securityContext), wantProxy!.securityContext);
      assert.deepEqual(json(stored.metadata?.annotations), expected.metadata?.annotations);
      stored.spec!.containers.forEach((c, i) => {
        for (const field of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
          const target = (g: { path?: string; port?: unknown } | undefined) => (g ? { path: g.path, port: g.port } : undefined);
          assert.deepEqual(target(c[field]?.httpGet), target(expected.spec!.containers[i]![field]?.httpGet), `${c.name} ${field}`);
        }
      });
    });
  }

  it('leaves a pod of an unlabelled namespace untouched', async function () {
    const stored = await core.createNamespacedPod({ namespace: plain, body: standalonePod('job', 'plain-job', plain) });
    assert.equal(stored.spec?.initContainers, undefined);
    assert.equal(stored.metadata?.annotations?.['tsmesh.io/status'], undefined);
  });

  it('leaves Kubernetes\' own namespaces untouched even when labelled', async function () {
    await core.patchNamespace({ name: 'kube-public', body: [{ op: 'add', path: '/metadata/labels/tsmesh.io~1inject', value: 'enabled' }] });
    const stored = await core.createNamespacedPod({ namespace: 'kube-public', body: standalonePod('job', 'public-job', 'kube-public') });
    assert.equal(stored.spec?.initContainers, undefined);
  });

  it('leaves pods opted out by label or annotation untouched', async function () {
    const byLabel = standalonePod('job', 'opt-out-label', meshed);
    byLabel.metadata!.labels = { 'tsmesh.io/inject': 'disabled' };
    const byAnnotation = standalonePod('opted-out', 'opt-out-annotation', meshed);
    for (const body of [byLabel, byAnnotation]) {
      const stored = await core.createNamespacedPod({ namespace: meshed, body });
      assert.equal(stored.spec?.initContainers, undefined, body.metadata?.name);
      assert.equal(stored.metadata?.annotations?.['tsmesh.io/status'], undefined);
    }
  });

  it('leaves an already injected pod as it is (idempotent through the API)', async function () {
    const first = await core.readNamespacedPod({ namespace: meshed, name: 'billing-api' });
    const again: V1Pod = { metadata: { name: 'billing-api-again', annotations: first.metadata!.annotations! }, spec: first.spec! };
    delete again.spec!.nodeName;
    const stored = await core.createNamespacedPod({ namespace: meshed, body: again });
    assert.deepEqual(json(stored.spec?.initContainers), json(first.spec?.initContainers));
    assert.deepEqual(json(stored.spec?.volumes), json(first.spec?.volumes));
  });

  it('refuses a pod with a bad override, with the annotation, the value and the expected form', async function () {
    const message = await refusal(core.createNamespacedPod({ namespace: meshed, body: standalonePod('bad-skip-inbound-ports', 'bad-ports', meshed) }));
    assert.match(message, /admission webhook "inject\.tsmesh\.io" denied the request: tsmesh: annotation tsmesh\.io\/skip-inbound-ports: "abc" is not a port list/);
    assert.match(message, /expected comma-separated ports or ranges like 25,3306,8000-8100/);
  });

  it("refuses a pod whose containers run as the proxy's uid or gid, saying what to change", async function () {
    const message = await refusal(core.createNamespacedPod({ namespace: meshed, body: standalonePod('proxy-uid', 'runs-as-proxy', meshed) }));
    assert.match(message, /denied the request: tsmesh: container reports runs as uid 1337 \(spec\.securityContext\.runAsUser\); container shipper runs as gid 1337/);
    assert.match(message, /annotate the pod tsmesh\.io\/allow-proxy-uid: "true"/);
  });

  it('accepts what `tsmesh inject` writes: a Deployment with its template injected', async function () {
    const yaml = readFileSync(new URL('../../webhook/testdata/deployment-two-containers.yaml', import.meta.url), 'utf8');
    const { output } = injectManifests(yaml, TEST_MESH, { version: TEST_VERSION });
    const deployment = parse(output, { version: '1.1' }) as Record<string, any>;
    deployment['metadata']['namespace'] = plain;
    deployment['spec']['template']['spec']['serviceAccountName'] = 'default';
    const apps = server!.kc.makeApiClient(AppsV1Api);
    const stored = await apps.createNamespacedDeployment({ namespace: plain, body: deployment as never });
    assert.deepEqual(stored.spec?.template.spec?.initContainers?.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy']);
  });

  it('with the webhook down, refuses meshed pods (failurePolicy Fail) with the API server\'s message', async function () {
    await webhook!.close();
    webhook = undefined;
    const message = await refusal(core.createNamespacedPod({ namespace: meshed, body: standalonePod('job', 'while-down', meshed) }));
    assert.match(message, /failed calling webhook "inject\.tsmesh\.io"/);
    assert.match(message, /connection refused/);
    // Pods of other namespaces are not held up.
    await core.createNamespacedPod({ namespace: plain, body: standalonePod('job', 'while-down', plain) });
  });
});
