// Proves the real-API-server tier: a fresh etcd + kube-apiserver, the
// TokenRequest API and TokenReview with the mesh CA's audience.

import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  apiServerTier,
  createNamespace,
  createServiceAccount,
  deleteServiceAccount,
  eventually,
  meshAudience,
  requestToken,
  reviewToken,
  serviceAccountIssuer,
  startApiServer,
  type ApiServer,
} from './apiserver.js';

describe('real API server tier (etcd + kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  const ns = 'tier-test';
  const sa = 'workload';

  before(async function () {
    const tier = apiServerTier();
    if (!tier.ok) {
      console.log(`      ${tier.reason}`);
      this.skip();
    }
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
});
