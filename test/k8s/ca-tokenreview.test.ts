// The CA authenticates proxies with real ServiceAccount tokens: TokenRequest
// tokens from a real kube-apiserver, checked by TokenReview bound to tsmesh-ca.
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { KubernetesAuthenticator, apiServerTokenReviewer } from '../../ca/authn/kubernetes.js';
import { buildCsrPem } from '../../ca/csr.js';
import { CaError } from '../../ca/errors.js';
import { newKey, newRootCa } from '../../ca/testdata/fixtures.js';
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
import { silentLogger } from '../../lib/log.js';
import {
  createNamespace,
  createServiceAccount,
  deleteServiceAccount,
  eventually,
  requestToken,
  serviceAccountIssuer,
  startApiServer,
  type ApiServer,
  skipWithoutApiServer,
} from './apiserver.js';

/** A bound ServiceAccount token signed with the API server's own key, already expired. */
function expiredToken(server: ApiServer, namespace: string, name: string, uid: string): string {
  const key = createPrivateKey(readFileSync(join(server.dir, 'pki', 'sa.key')));
  const kid = createHash('sha256').update(createPublicKey(key).export({ type: 'spki', format: 'der' })).digest('base64url');
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'ES256', kid })}.${b64({
    aud: ['tsmesh-ca'],
    iss: serviceAccountIssuer,
    sub: `system:serviceaccount:${namespace}:${name}`,
    iat: now - 7200,
    nbf: now - 7200,
    exp: now - 3600,
    'kubernetes.io': { namespace, serviceaccount: { name, uid } },
  })}`;
  return `${body}.${sign('sha256', Buffer.from(body), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

describe('CA with Kubernetes TokenReview (real kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  let plane: RunningControlPlane | undefined;
  let agent: Agent;
  let authenticator: KubernetesAuthenticator;
  const ns = 'shop';

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    await createNamespace(server.kc, ns);
    await createServiceAccount(server.kc, ns, 'web');
    await createServiceAccount(server.kc, ns, 'gone');
    const { ca } = await newRootCa();
    authenticator = new KubernetesAuthenticator('cluster.local', apiServerTokenReviewer(server.kc));
    plane = await startControlPlane({ authority: ca, authenticator, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0 });
    agent = new Agent({ connect: { ca: ca.trustBundle.toPem(), servername: 'tsmesh-control-plane.tsmesh-system.svc' } });
  });
  after(async () => {
    await agent?.close();
    await plane?.close();
    await server?.stop();
  });

  async function post(token: string, csr = buildCsrPem(newKey())) {
    const res = await request(`https://127.0.0.1:${plane!.caPort}/v1/certificates`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ csr }),
    });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, any> };
  }

  it('issues spiffe://cluster.local/ns/<ns>/sa/<sa> for a TokenRequest token with audience tsmesh-ca', async () => {
    const { token } = await requestToken(server!.kc, ns, 'web', 'tsmesh-ca', 600);
    const r = await post(token, buildCsrPem(newKey(), 'spiffe://cluster.local/ns/shop/sa/web'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
  });

  it('refuses the same service account\'s token for another identity in the CSR (403)', async () => {
    const { token } = await requestToken(server!.kc, ns, 'web', 'tsmesh-ca', 600);
    const r = await post(token, buildCsrPem(newKey(), 'spiffe://cluster.local/ns/shop/sa/admin'));
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'identity-mismatch');
  });

  it('refuses a token minted for another audience (401)', async () => {
    const { token } = await requestToken(server!.kc, ns, 'web', 'https://kubernetes.default.svc', 600);
    const r = await post(token);
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /tsmesh-ca/);
  });

  it('refuses an expired token (401)', async () => {
    const sa = await server!.kc.makeApiClient(CoreV1Api).readNamespacedServiceAccount({ namespace: ns, name: 'web' });
    const r = await post(expiredToken(server!, ns, 'web', sa.metadata!.uid!));
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /expired/i);
  });

  it('refuses the token of a deleted service account (401)', async () => {
    const { token } = await requestToken(server!.kc, ns, 'gone', 'tsmesh-ca', 600);
    assert.equal((await post(token)).status, 200);
    await deleteServiceAccount(server!.kc, ns, 'gone');
    // kube-apiserver caches a successful token authentication for 10 s.
    const status = await eventually(async () => {
      const r = await post(token);
      return r.status === 200 ? undefined : r.status;
    }, 20_000, 'the deleted service account\'s token to be refused');
    assert.equal(status, 401);
  });

  it('refuses garbage (401) and reports an unreachable API server as unavailable (503)', async () => {
    assert.equal((await post('not-a-jwt')).status, 401);
    const { KubeConfig } = await import('@kubernetes/client-node');
    const dead = new KubeConfig();
    dead.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 'x' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const offline = new KubernetesAuthenticator('cluster.local', apiServerTokenReviewer(dead));
    await assert.rejects(offline.authenticate('anything'), (e: unknown) => e instanceof CaError && e.code === 'authenticator-unavailable');
  });
});
