// The webhook over real HTTPS with real AdmissionReview JSON, as the API server sends it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { silentLogger } from '../lib/log.js';
import { startWebhookServer, type RunningWebhook } from './app.js';
import { applyPodPatch } from './manifests.js';
import { createWebhookMetrics } from './metrics.js';
import { admissionRouter } from './server.js';
import { asPod, injectFixture, loadFixture, TEST_MESH, TEST_VERSION } from './testdata/fixtures.js';
import { webhookServingCertificate, type ServingMaterial } from './testdata/tls.js';

let uidCounter = 0;

function review(object: unknown, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const uid = `7c5b3a94-0000-4000-8000-${String(++uidCounter).padStart(12, '0')}`;
  const meta = (object as { metadata?: { name?: string; namespace?: string } }).metadata ?? {};
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: meta.name,
      namespace: meta.namespace ?? 'default',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...overrides,
    },
  };
}

describe('webhook server over HTTPS', function () {
  let tls: ServingMaterial;
  let webhook: RunningWebhook;
  let registry: Registry;
  let agent: Agent;
  let base: string;

  before(async function () {
    tls = await webhookServingCertificate();
    registry = new Registry();
    webhook = await startWebhookServer({ mesh: TEST_MESH, version: TEST_VERSION, registry, log: silentLogger, tls, host: '127.0.0.1', port: 0 });
    agent = new Agent({ connect: { ca: tls.ca } });
    base = `https://127.0.0.1:${webhook.port}`;
  });
  after(async function () {
    await agent?.close();
    await webhook?.close();
  });

  async function post(body: string | object, path = '/inject', contentType = 'application/json') {
    const res = await request(`${base}${path}`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': contentType },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: (text.startsWith('{') ? JSON.parse(text) : {}) as Record<string, any> };
  }

  async function counter(name: string, labels: string): Promise<number> {
    const text = await registry.metrics();
    const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  }

  it('injects a pod: allowed, the uid echoed, a base64 JSONPatch equal to buildPodPatch\'s', async function () {
    const fixture = loadFixture('deployment-two-containers');
    const pod = asPod(fixture, 'shop-7d9c-abcde');
    const body = review(pod);
    const before = await counter('tsmesh_webhook_admissions_total', 'result="injected"');
    const r = await post(body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.apiVersion, 'admission.k8s.io/v1');
    assert.equal(r.json.kind, 'AdmissionReview');
    const response = r.json.response;
    assert.equal(response.uid, (body.request as { uid: string }).uid);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
    assert.deepEqual(patch, injectFixture(fixture).injected!.patch);
    applyPodPatch(pod, patch);
    assert.deepEqual(pod.spec.initContainers.map((c: { name: string }) => c.name), ['tsmesh-init', 'tsmesh-proxy']);
    assert.equal(response.warnings, undefined);
    assert.equal(await counter('tsmesh_webhook_admissions_total', 'result="injected"'), before + 1);
  });

  it('admits a skipped pod unchanged, with the reason as a warning, counted by reason', async function () {
    const r = await post(review(asPod(loadFixture('host-network'))));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.response.allowed, true);
    assert.equal(r.json.response.patch, undefined);
    assert.equal(r.json.response.patchType, undefined);
    assert.deepEqual(r.json.response.warnings, ["tsmesh: pod not injected: the pod uses hostNetwork: redirecting its traffic would redirect the node's"]);
    assert.equal(await counter('tsmesh_webhook_skipped_total', 'reason="host-network"'), 1);
  });

  it('passes warnings of an injected pod through', async function () {
    const r = await post(review(asPod(loadFixture('probe-warnings'))));
    assert.equal(r.json.response.allowed, true);
    assert.ok(r.json.response.patch);
    assert.equal(r.json.response.warnings.length, 2);
    assert.match(r.json.response.warnings[0], /^tsmesh: livenessProbe of container server is left as it is: port "admin" is not one of the container's ports/);
  });

  it('refuses a pod with a bad override: allowed false, code 400, the annotation and value named', async function () {
    const r = await post(review(asPod(loadFixture('bad-skip-inbound-ports'))));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.response.allowed, false);
    assert.equal(r.json.response.status.code, 400);
    assert.match(r.json.response.status.message, /tsmesh\.io\/skip-inbound-ports: "abc" is not a port list.*expected comma-separated ports/);
    assert.equal(await counter('tsmesh_webhook_refused_total', 'reason="bad-override"'), 1);
    assert.equal(await counter('tsmesh_webhook_admissions_total', 'result="refused"'), 1);
  });

  it("refuses a pod whose containers run as the proxy's uid or gid, saying what to change; admits it with warnings under tsmesh.io/allow-proxy-uid", async function () {
    const before = await counter('tsmesh_webhook_refused_total', 'reason="proxy-uid"');
    const refused = await post(review(asPod(loadFixture('proxy-uid'), 'reports-5f7b-xk2p9')));
    assert.equal(refused.status, 200, refused.text);
    assert.equal(refused.json.response.allowed, false);
    assert.equal(refused.json.response.status.code, 400);
    assert.match(refused.json.response.status.message, /^tsmesh: container reports runs as uid 1337 \(spec\.securityContext\.runAsUser\); container shipper runs as gid 1337/);
    assert.match(refused.json.response.status.message, /Set runAsUser and runAsGroup to another id .* annotate the pod tsmesh\.io\/allow-proxy-uid: "true"$/);
    assert.equal(await counter('tsmesh_webhook_refused_total', 'reason="proxy-uid"'), before + 1);
    const allowed = await post(review(asPod(loadFixture('proxy-uid-allowed'))));
    assert.equal(allowed.json.response.allowed, true);
    assert.ok(allowed.json.response.patch);
    assert.deepEqual(allowed.json.response.warnings, [
      "tsmesh: init container seed runs as uid 1337 (spec.initContainers[0].securityContext.runAsUser), the proxy's: its traffic is not redirected and bypasses mTLS (allowed by tsmesh.io/allow-proxy-uid)",
    ]);
  });

  it('admits an UPDATE unchanged: only creation is meshed', async function () {
    const pod = asPod(loadFixture('job'));
    const r = await post(review(pod, { operation: 'UPDATE', oldObject: pod }));
    assert.equal(r.json.response.allowed, true);
    assert.equal(r.json.response.patch, undefined);
    assert.equal(r.json.response.warnings, undefined);
  });

  it('takes the namespace from the request when the object names none', async function () {
    const pod = asPod(loadFixture('job'));
    delete pod.metadata.namespace;
    const r = await post(review(pod, { namespace: 'kube-system' }));
    assert.match(r.json.response.warnings[0], /namespace kube-system is never meshed/);
  });

  const malformed: [string, () => string | object, string, RegExp][] = [
    ['a body that is not JSON', () => '{"apiVersion": ', 'application/json', /not valid JSON/],
    ['a JSON array', () => [1, 2], 'application/json', /expected an AdmissionReview JSON object, got an array/],
    ['admission.k8s.io/v1beta1', () => ({ ...review({}), apiVersion: 'admission.k8s.io/v1beta1' }), 'application/json', /v1beta1.*not supported; send admission\.k8s\.io\/v1/],
    ['another kind', () => ({ ...review({}), kind: 'TokenReview' }), 'application/json', /kind "TokenReview" is not AdmissionReview/],
    ['no request', () => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), 'application/json', /no "request" object/],
    ['a request without uid', () => review({}, { uid: undefined }), 'application/json', /request\.uid is missing/],
    ['a request for a Deployment', () => review({}, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), 'application/json', /only v1 Pods, not apps\/v1 Deployment/],
    ['JSON sent as text/plain, without a uid', () => JSON.stringify(review({}, { uid: '' })), 'text/plain', /request\.uid is missing/],
  ];
  for (const [what, body, type, message] of malformed) {
    it(`answers 400 to ${what}, and keeps serving`, async function () {
      const r = await post(body(), '/inject', type);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'bad-review');
      assert.match(r.json.error.message, message);
      const ok = await post(review(asPod(loadFixture('job'))));
      assert.equal(ok.json.response.allowed, true);
    });
  }

  it('answers 413 to a 10 MB body, and keeps serving', async function () {
    const before = await counter('tsmesh_webhook_errors_total', 'reason="too-large"');
    const big = review({ metadata: { annotations: { filler: 'x'.repeat(10 * 1024 * 1024) } }, spec: { containers: [{ name: 'a', image: 'b' }] } });
    const r = await post(big);
    assert.equal(r.status, 413, r.text.slice(0, 200));
    assert.match(r.json.error.message, /larger than 4194304 bytes/);
    assert.equal(await counter('tsmesh_webhook_errors_total', 'reason="too-large"'), before + 1);
    const ok = await post(review(asPod(loadFixture('job'))));
    assert.equal(ok.json.response.allowed, true);
  });

  it('answers 404 elsewhere and serves /healthz', async function () {
    assert.equal((await post(review({}), '/mutate')).status, 404);
    const res = await request(`${base}/healthz`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok\n');
  });

  it('exposes every result of tsmesh_webhook_admissions_total from the start', async function () {
    const fresh = new Registry();
    createWebhookMetrics(fresh);
    const out = await fresh.metrics();
    for (const result of ['injected', 'skipped', 'refused', 'error']) assert.match(out, new RegExp(`tsmesh_webhook_admissions_total\\{result="${result}"\\} 0`));
  });

  it('swaps its serving certificate without a restart', async function () {
    const next = await webhookServingCertificate();
    webhook.setTls(next);
    const fresh = new Agent({ connect: { ca: next.ca } });
    try {
      const res = await request(`${base}/healthz`, { dispatcher: fresh });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    } finally {
      await fresh.close();
      webhook.setTls(tls);
    }
  });
});

describe('admission router: a failing handler', function () {
  let server: Server;
  let registry: Registry;
  let agent: Agent;
  let tls: ServingMaterial;

  before(async function () {
    tls = await webhookServingCertificate();
    registry = new Registry();
    const app = express();
    app.use(
      admissionRouter({
        path: '/inject',
        handler: () => {
          throw new TypeError('cannot read properties of undefined');
        },
        metrics: createWebhookMetrics(registry),
        log: silentLogger,
      }),
    );
    server = createServer({ key: tls.key, cert: tls.cert }, app);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    agent = new Agent({ connect: { ca: tls.ca } });
  });
  after(async function () {
    await agent?.close();
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  it('answers a failed admission (code 500, a message saying where to look) and counts an error', async function () {
    const body = review({ spec: { containers: [{ name: 'a' }] } });
    const res = await request(`https://127.0.0.1:${(server.address() as AddressInfo).port}/inject`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await res.body.json()) as Record<string, any>;
    assert.equal(res.statusCode, 200);
    assert.equal(json.response.uid, (body.request as { uid: string }).uid);
    assert.equal(json.response.allowed, false);
    assert.equal(json.response.status.code, 500);
    assert.match(json.response.status.message, /failed on this pod \(cannot read properties of undefined\); see the control plane's log/);
    const text = await registry.metrics();
    assert.match(text, /tsmesh_webhook_admissions_total\{result="error"\} 1/);
    assert.match(text, /tsmesh_webhook_errors_total\{reason="internal"\} 1/);
  });
});
