// Proves the real-API-server tier: a fresh etcd + kube-apiserver, the
// TokenRequest API and TokenReview with the mesh CA's audience.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import {
  createNamespace,
  createServiceAccount,
  deleteServiceAccount,
  eventually,
  meshAudience,
  registerMutatingWebhook,
  requestToken,
  reviewToken,
  serviceAccountIssuer,
  startApiServer,
  type ApiServer,
  skipWithoutApiServer,
} from './apiserver.js';

describe('real API server tier (etcd + kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  const ns = 'tier-test';
  const sa = 'workload';

  before(async function () {
    skipWithoutApiServer(this);
    const t0 = Date.now();
    server = await startApiServer();
    console.log(`      API server ready at ${server.url} in ${Date.now() - t0} ms`);
  });

  after(async function () {
    await server?.stop();
  });

  it('serves the API with the admin kubeconfig', async function () {
    const core = server!.kc.makeApiClient(CoreV1Api);
    const list = await core.listNamespace();
    const names = list.items.map((n) => n.metadata?.name);
    assert.ok(names.includes('default'), `namespaces: ${names.join(', ')}`);
  });

  it('creates a namespace with labels and a service account', async function () {
    const created = await createNamespace(server!.kc, ns, { 'tsmesh.io/inject': 'enabled' });
    assert.equal(created.metadata?.labels?.['tsmesh.io/inject'], 'enabled');
    const account = await createServiceAccount(server!.kc, ns, sa);
    assert.equal(account.metadata?.namespace, ns);
    assert.ok(account.metadata?.uid);
  });

  it('authenticates a tsmesh-ca token with TokenReview bound to that audience', async function () {
    const { token, expiration } = await requestToken(server!.kc, ns, sa, meshAudience, 600);
    assert.ok(expiration.getTime() > Date.now() + 500_000, `expiration ${expiration.toISOString()}`);
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { iss: string; aud: string[] };
    assert.equal(claims.iss, serviceAccountIssuer);
    assert.deepEqual(claims.aud, [meshAudience]);

    const status = await reviewToken(server!.kc, token, [meshAudience]);
    assert.equal(status.authenticated, true, `review: ${JSON.stringify(status)}`);
    assert.equal(status.user?.username, `system:serviceaccount:${ns}:${sa}`);
    assert.ok(status.user?.groups?.includes(`system:serviceaccounts:${ns}`));
    assert.ok(status.audiences?.includes(meshAudience), `audiences: ${JSON.stringify(status.audiences)}`);
  });

  it('refuses a token for another audience when reviewed for tsmesh-ca', async function () {
    const { token } = await requestToken(server!.kc, ns, sa, 'some-other-audience', 600);
    const status = await reviewToken(server!.kc, token, [meshAudience]);
    assert.notEqual(status.authenticated, true, `review: ${JSON.stringify(status)}`);
  });

  it('refuses a garbage token', async function () {
    const status = await reviewToken(server!.kc, 'not.a.token', [meshAudience]);
    assert.notEqual(status.authenticated, true);
  });

  it('refuses the tokens once the service account is deleted', async function () {
    const reviewed = (await requestToken(server!.kc, ns, sa, meshAudience, 600)).token;
    const fresh = (await requestToken(server!.kc, ns, sa, meshAudience, 600)).token;
    assert.equal((await reviewToken(server!.kc, reviewed, [meshAudience])).authenticated, true);
    await deleteServiceAccount(server!.kc, ns, sa);

    // A token never reviewed before is refused as soon as the deletion is seen.
    const t0 = Date.now();
    await eventually(async () => ((await reviewToken(server!.kc, fresh, [meshAudience])).authenticated ? undefined : true),
      5_000, 'a fresh token to be refused after deleting its service account');
    const freshMs = Date.now() - t0;
    // kube-apiserver caches successful token authentications for 10 s, so a
    // token reviewed just before the deletion is refused only after that.
    await eventually(async () => ((await reviewToken(server!.kc, reviewed, [meshAudience])).authenticated ? undefined : true),
      15_000, 'a reviewed token to be refused after deleting its service account');
    console.log(`      refused after deletion: fresh token in ${freshMs} ms, reviewed token in ${Date.now() - t0} ms`);
  });

  it('calls a mutating webhook registered by URL for labelled namespaces only', async function () {
    const certs = webhookCerts();
    const seen: string[] = [];
    const webhook: Server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const review = JSON.parse(body) as { request: { uid: string; namespace: string } };
        seen.push(review.request.namespace);
        const patch = [{ op: 'add', path: '/metadata/labels/webhook-saw', value: 'yes' }];
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: { uid: review.request.uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') },
        }));
      });
    });
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
    try {
      const port = (webhook.address() as AddressInfo).port;
      await registerMutatingWebhook(server!.kc, {
        name: 'tier-test-injector',
        url: `https://127.0.0.1:${port}/mutate`,
        caBundle: certs.ca,
        namespaceSelector: { matchLabels: { 'tsmesh.io/inject': 'enabled' } },
        failurePolicy: 'Fail',
      });
      const core = server!.kc.makeApiClient(CoreV1Api);
      await createNamespace(server!.kc, 'tier-plain');
      // No controller manager: the ServiceAccount admission plugin needs the
      // default account to exist.
      for (const n of [ns, 'tier-plain']) await createServiceAccount(server!.kc, n, 'default');
      const pod = (name: string): V1Pod => ({
        metadata: { name, labels: { app: 'demo' } },
        spec: { containers: [{ name: 'app', image: 'registry.invalid/demo:1' }] },
      });
      // The API server sees a new webhook configuration within a moment: poll
      // with dry-run creates until the patch shows up.
      const patched = await eventually(async () => {
        const p = await core.createNamespacedPod({ namespace: ns, body: pod('probe'), dryRun: 'All' });
        return p.metadata?.labels?.['webhook-saw'] === 'yes' ? p : undefined;
      }, 10_000, 'the webhook to patch pods');
      assert.equal(patched.metadata?.labels?.['app'], 'demo');
      const created = await core.createNamespacedPod({ namespace: ns, body: pod('meshed') });
      assert.equal(created.metadata?.labels?.['webhook-saw'], 'yes');
      const plain = await core.createNamespacedPod({ namespace: 'tier-plain', body: pod('plain') });
      assert.equal(plain.metadata?.labels?.['webhook-saw'], undefined);
      assert.ok(!seen.includes('tier-plain'), `webhook saw namespaces ${seen.join(', ')}`);
    } finally {
      await new Promise((r) => webhook.close(r));
    }
  });
});

/** A CA and a serving certificate for 127.0.0.1, made with openssl. */
function webhookCerts(): { ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-webhook-'));
  try {
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=webhook-test-ca']);
    run(['req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1']);
    writeFileSync(join(dir, 'srv.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    run(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
      '-out', 'srv.crt', '-extfile', 'srv.ext']);
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    return { ca: read('ca.crt'), cert: read('srv.crt'), key: read('srv.key') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
