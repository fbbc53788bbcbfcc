// tsmesh tap authorized by Kubernetes RBAC, against a real kube-apiserver:
// the control plane, with its own ServiceAccount's token and the grants of
// manifests/control-plane.yaml, reviews each caller's bearer token and asks
// a SubjectAccessReview for verb watch on tap.tsmesh.io/tap (and tap/headers
// for header values) in the target's namespace. Callers are ServiceAccounts
// bound, or not, to ClusterRole tsmesh-tap of the manifests. The proxies are
// real sidecars on loopback (control/testdata/tap-mesh.ts).
import assert from 'node:assert/strict';
import type { KubeConfig } from '@kubernetes/client-node';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { CONTROL_PLANE_NAME, MESH_NAMESPACE, TAP_API_GROUP, TAP_CLUSTER_ROLE, TAP_RESOURCE, TAP_VERB } from '../../contract/names.js';
import { kubernetesTapAuthorizer } from '../../control/tap.js';
// The tap tests' mesh: a peer's test fixture, reached across on purpose.
import { get, startTapMesh, TapClient, until, type TapMesh } from '../../control/testdata/tap-mesh.js';
import { createNamespace, createServiceAccount, requestToken, skipWithoutApiServer, startApiServer, type ApiServer } from './apiserver.js';
import { applyOrder, kubeConfigWithToken, readManifests, serverSideApply } from './manifests.js';

const RBAC = 'rbac.authorization.k8s.io/v1';

describe('tsmesh tap authorized by Kubernetes RBAC (real kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  let mesh: TapMesh | undefined;
  const tokens: Record<string, string> = {};
  const clients: TapClient[] = [];

  const tap = async (query: string, who?: string): Promise<TapClient> => {
    const c = new TapClient(mesh!.plane.adminPort, query, who ? { authorization: `Bearer ${tokens[who]}` } : {});
    clients.push(c);
    await until('the answer', () => c.status !== 0 || undefined, 20_000).catch(() => undefined);
    return c;
  };

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    const kc = server.kc;
    // The control plane's ServiceAccount and roles, and ClusterRole tsmesh-tap, as installed.
    for (const d of applyOrder(readManifests().filter((x) => x.file === 'namespace.yaml' || x.file === 'control-plane.yaml'))) await serverSideApply(kc, d.object);
    await createNamespace(kc, 'shop');
    for (const sa of ['stranger', 'tapper', 'peeker']) await createServiceAccount(kc, 'shop', sa);
    const bind = (name: string, sa: string, role: { kind: string; name: string }) =>
      serverSideApply(kc, {
        apiVersion: RBAC,
        kind: 'RoleBinding',
        metadata: { name, namespace: 'shop' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', ...role },
        subjects: [{ kind: 'ServiceAccount', name: sa, namespace: 'shop' }],
      });
    await bind('tapper-taps', 'tapper', { kind: 'ClusterRole', name: TAP_CLUSTER_ROLE });
    // A role that taps with header values redacted only.
    await serverSideApply(kc, { apiVersion: RBAC, kind: 'Role', metadata: { name: 'tap-redacted', namespace: 'shop' }, rules: [{ apiGroups: [TAP_API_GROUP], resources: [TAP_RESOURCE], verbs: [TAP_VERB] }] });
    await bind('peeker-taps', 'peeker', { kind: 'Role', name: 'tap-redacted' });
    for (const sa of ['stranger', 'tapper', 'peeker']) tokens[sa] = (await requestToken(kc, 'shop', sa, [], 3600)).token;
    const own: KubeConfig = kubeConfigWithToken(kc, (await requestToken(kc, MESH_NAMESPACE, CONTROL_PLANE_NAME, [], 3600)).token, CONTROL_PLANE_NAME);
    const { ca } = await newRootCa();
    mesh = await startTapMesh(ca, { authorize: kubernetesTapAuthorizer(own) });
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  after(async () => {
    await mesh?.close();
    await server?.stop();
  });

  it('refuses a caller without a token (401), saying what to send', async () => {
    const c = await tap('target=workload/api&namespace=shop');
    assert.equal(c.status, 401);
    assert.match(c.text, /tap needs a bearer token .* kubectl create token/);
  });

  it('refuses a token the API server does not accept (401)', async () => {
    tokens['forged'] = 'not-a-token';
    const c = await tap('target=workload/api&namespace=shop', 'forged');
    assert.equal(c.status, 401);
    assert.match(c.text, /the API server did not accept the bearer token/);
  });

  it('refuses a ServiceAccount without the grant (403), naming the missing permission and the fix', async () => {
    const c = await tap('target=workload/api&namespace=shop', 'stranger');
    assert.equal(c.status, 403);
    assert.match(c.text, /user "system:serviceaccount:shop:stranger" may not watch tap\.tap\.tsmesh\.io in namespace "shop"/);
    assert.match(c.text, /--clusterrole tsmesh-tap/);
    assert.equal(mesh!.b.telemetry.tap.tapCount, 0);
  });

  it('streams to one bound to ClusterRole tsmesh-tap, and only in the namespace it is bound in', async () => {
    const c = await tap('target=workload/api&namespace=shop&showHeaders=true', 'tapper');
    assert.equal(c.status, 200, c.text);
    await until('the proxy to open the tap', () => mesh!.b.telemetry.tap.tapCount === 1);
    await get(mesh!.a, '/rbac', { authorization: 'Bearer app-secret' });
    const [req] = await until('the req event', () => c.of('req').length > 0 && c.of('req'));
    assert.equal(req!['path'], '/rbac');
    assert.equal((req!['headers'] as Record<string, string>)['authorization'], 'Bearer app-secret');
    const elsewhere = await tap('target=ns/default', 'tapper');
    assert.equal(elsewhere.status, 403);
    assert.match(elsewhere.text, /in namespace "default"/);
  });

  it('needs watch on tap/headers for header values: without it, showHeaders is refused and a plain tap streams', async () => {
    const shown = await tap('target=workload/api&namespace=shop&showHeaders=true', 'peeker');
    assert.equal(shown.status, 403);
    assert.match(shown.text, /may not watch tap\/headers\.tap\.tsmesh\.io \(for --show-headers\) in namespace "shop"/);
    const plain = await tap('target=workload/api&namespace=shop', 'peeker');
    assert.equal(plain.status, 200, plain.text);
  });
});
