// The control plane's RBAC (manifests/control-plane.yaml) is enough for what
// it does and no more. The rules are compared with the list of grants below;
// then, against a real kube-apiserver, the manifests are applied and the
// control plane works with its own ServiceAccount's token: the CA reviews a
// workload's token, the reads and writes it makes go through, and
// SelfSubjectAccessReview (asked with that same token, so the groups are the
// real ones) allows each grant and denies a sample of what it must not do.

import assert from 'node:assert/strict';
import { AdmissionregistrationV1Api, AuthorizationV1Api, CoordinationV1Api, CoreV1Api, DiscoveryV1Api, RbacAuthorizationV1Api, type KubeConfig, type V1ResourceAttributes } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { KubernetesAuthenticator, apiServerTokenReviewer } from '../../ca/authn/kubernetes.js';
import { buildCsrPem } from '../../ca/csr.js';
import { CaError } from '../../ca/errors.js';
import { newKey, newRootCa } from '../../ca/testdata/fixtures.js';
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
import { MESH_NAMESPACE, CONTROL_PLANE_NAME } from '../../contract/names.js';
import { silentLogger } from '../../lib/log.js';
import {
  createNamespace,
  createServiceAccount,
  deleteMutatingWebhook,
  isStatus,
  registerMutatingWebhook,
  requestToken,
  startApiServer,
  type ApiServer,
  skipWithoutApiServer,
} from './apiserver.js';
import { ApiRequestError, applyOrder, kubeConfigWithToken, kubeRequest, readManifests, serverSideApply, type ManifestObject } from './manifests.js';

const NS = MESH_NAMESPACE;
const WEBHOOK = 'tsmesh-sidecar-injector';
const LEASE = 'tsmesh-control-plane';

/**
 * What the control plane may do. `namespace: '*'` is a ClusterRole grant;
 * a namespace name is a Role grant in that namespace. Update and patch are
 * limited by name where RBAC allows it (create and list cannot be).
 */
interface Grant {
  namespace: '*' | string;
  group: string;
  resources: string[];
  verbs: string[];
  names?: string[];
  why: string;
}

const GRANTS: Grant[] = [
  { namespace: '*', group: 'authentication.k8s.io', resources: ['tokenreviews'], verbs: ['create'], why: 'the CA reviews proxies\' tokens' },
  { namespace: '*', group: 'authorization.k8s.io', resources: ['subjectaccessreviews'], verbs: ['create'], why: 'tsmesh tap: may its caller tap the namespace (control/tap.ts)' },
  { namespace: '*', group: '', resources: ['services', 'pods', 'namespaces'], verbs: ['get', 'list', 'watch'], why: 'discovery' },
  { namespace: '*', group: 'discovery.k8s.io', resources: ['endpointslices'], verbs: ['get', 'list', 'watch'], why: 'discovery' },
  { namespace: '*', group: '', resources: ['configmaps'], verbs: ['get', 'list', 'watch', 'create'], why: 'trust bundle in meshed namespaces; mesh settings' },
  { namespace: '*', group: '', resources: ['configmaps'], verbs: ['update'], names: ['tsmesh-trust-bundle'], why: 'keeps the trust bundle current (tsmesh-config is only read)' },
  { namespace: '*', group: 'tsmesh.io', resources: ['trafficpolicies', 'authorizationpolicies'], verbs: ['get', 'list', 'watch'], why: 'policies' },
  { namespace: '*', group: 'tsmesh.io', resources: ['trafficpolicies/status', 'authorizationpolicies/status'], verbs: ['update'], why: 'policy status' },
  { namespace: '*', group: 'gateway.networking.k8s.io', resources: ['httproutes', 'grpcroutes'], verbs: ['get', 'list', 'watch'], why: 'Gateway API routes (no ReferenceGrant: mesh routes need none, GEP-1294)' },
  { namespace: '*', group: 'gateway.networking.k8s.io', resources: ['httproutes/status', 'grpcroutes/status'], verbs: ['update'], why: 'route status (status.parents of the mesh controller)' },
  { namespace: '*', group: 'admissionregistration.k8s.io', resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'patch'], names: [WEBHOOK], why: 'sets the injector\'s caBundle' },
  // No Secret: the CA material (Secret tsmesh-ca, made by tsmesh install) reaches the pod as a mounted volume.
  { namespace: NS, group: 'coordination.k8s.io', resources: ['leases'], verbs: ['get', 'update'], names: [LEASE], why: 'leader election: one replica writes' },
  { namespace: NS, group: 'coordination.k8s.io', resources: ['leases'], verbs: ['create'], why: 'leader election (create cannot be limited by name)' },
  { namespace: NS, group: '', resources: ['events'], verbs: ['create'], why: 'a Warning Event on a refused tsmesh-config' },
];

/** One permission as a comparable string: scope group resource verb name. */
function tuples(g: { namespace: string; group: string; resources: string[]; verbs: string[]; names?: string[] }): string[] {
  const names = g.names && g.names.length > 0 ? g.names : ['*'];
  return g.resources.flatMap((r) => g.verbs.flatMap((v) => names.map((n) => `${g.namespace} ${g.group || 'core'} ${r} ${v} ${n}`)));
}

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** The permissions granted to the control plane's ServiceAccount by the manifests' roles and bindings. */
function grantedByManifests(objects: ManifestObject[]): string[] {
  const isOurs = (o: ManifestObject): boolean =>
    ((o['subjects'] as { kind: string; name: string; namespace?: string }[] | undefined) ?? []).some(
      (s) => s.kind === 'ServiceAccount' && s.name === CONTROL_PLANE_NAME && s.namespace === NS,
    );
  const out: string[] = [];
  for (const b of objects.filter((o) => (o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') && isOurs(o))) {
    const ref = b['roleRef'] as { kind: string; name: string };
    const scope = b.kind === 'RoleBinding' ? b.metadata.namespace! : '*';
    const role = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name && (ref.kind === 'ClusterRole' || o.metadata.namespace === scope));
    assert.ok(role, `${b.kind} ${b.metadata.name} refers to ${ref.kind} ${ref.name}, which manifests/ does not define`);
    for (const r of (role['rules'] as Rule[] | undefined) ?? []) {
      assert.equal(r.nonResourceURLs, undefined, `${ref.kind} ${ref.name} grants non-resource URLs`);
      for (const group of r.apiGroups ?? []) {
        out.push(...tuples({ namespace: scope, group, resources: r.resources ?? [], verbs: r.verbs ?? [], ...(r.resourceNames ? { names: r.resourceNames } : {}) }));
      }
    }
  }
  return out.sort();
}

/** Access checks for each grant: one per verb and resource, on a named object where the grant names one. */
function grantChecks(): V1ResourceAttributes[] {
  return GRANTS.flatMap((g) =>
    g.resources.flatMap((res) => {
      const [resource, subresource] = res.split('/') as [string, string | undefined];
      return g.verbs.map((verb) => ({
        group: g.group,
        resource,
        verb,
        ...(subresource ? { subresource } : {}),
        ...(g.names ? { name: g.names[0]! } : {}),
        // A ClusterRole grant holds in every namespace: check one meshed namespace.
        ...(g.namespace === '*' ? (['namespaces', 'tokenreviews', 'subjectaccessreviews', 'mutatingwebhookconfigurations'].includes(resource) ? {} : { namespace: 'shop' }) : { namespace: g.namespace }),
      }));
    }),
  );
}

/** A sample of what the control plane must not be able to do. */
const DENIED: { attrs: V1ResourceAttributes; why: string }[] = [
  { attrs: { resource: 'secrets', verb: 'get', namespace: 'kube-system', name: 'anything' }, why: 'secrets outside tsmesh-system' },
  { attrs: { resource: 'secrets', verb: 'list' }, why: 'secrets cluster-wide' },
  { attrs: { resource: 'secrets', verb: 'list', namespace: NS }, why: 'listing secrets, even its own namespace\'s' },
  { attrs: { resource: 'secrets', verb: 'get', namespace: NS, name: 'other' }, why: 'other secrets in tsmesh-system' },
  { attrs: { resource: 'secrets', verb: 'delete', namespace: NS, name: 'tsmesh-ca' }, why: 'deleting the CA' },
  { attrs: { resource: 'secrets', verb: 'get', namespace: NS, name: 'tsmesh-ca' }, why: 'reading the CA key through the API (the pod mounts it)' },
  { attrs: { resource: 'secrets', verb: 'update', namespace: NS, name: 'tsmesh-ca' }, why: 'replacing the CA' },
  { attrs: { resource: 'secrets', verb: 'create', namespace: NS }, why: 'creating secrets' },
  { attrs: { resource: 'secrets', verb: 'create', namespace: 'shop' }, why: 'creating secrets elsewhere' },
  { attrs: { resource: 'configmaps', verb: 'update', namespace: NS, name: 'tsmesh-config' }, why: 'changing the mesh settings (read only)' },
  { attrs: { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: NS, name: 'kube-controller-manager' }, why: 'other leases' },
  { attrs: { group: 'coordination.k8s.io', resource: 'leases', verb: 'update', namespace: 'kube-system', name: LEASE }, why: 'leases outside tsmesh-system' },
  { attrs: { group: 'coordination.k8s.io', resource: 'leases', verb: 'delete', namespace: NS, name: LEASE }, why: 'deleting the lease' },
  { attrs: { resource: 'pods', verb: 'delete', namespace: 'shop' }, why: 'deleting pods' },
  { attrs: { resource: 'pods', verb: 'create', namespace: 'shop' }, why: 'creating pods' },
  { attrs: { resource: 'pods', verb: 'patch', namespace: 'shop', name: 'web' }, why: 'changing pods' },
  { attrs: { resource: 'pods', subresource: 'exec', verb: 'create', namespace: 'shop', name: 'web' }, why: 'exec into pods' },
  { attrs: { resource: 'services', verb: 'update', namespace: 'shop', name: 'web' }, why: 'changing services' },
  { attrs: { resource: 'namespaces', verb: 'delete', name: 'shop' }, why: 'deleting namespaces' },
  { attrs: { resource: 'configmaps', verb: 'update', namespace: 'shop', name: 'app-settings' }, why: 'other apps\' ConfigMaps' },
  { attrs: { resource: 'configmaps', verb: 'delete', namespace: 'shop', name: 'tsmesh-trust-bundle' }, why: 'deleting ConfigMaps' },
  { attrs: { resource: 'serviceaccounts', subresource: 'token', verb: 'create', namespace: 'shop', name: 'web' }, why: 'minting tokens for workloads' },
  { attrs: { resource: 'events', verb: 'create', namespace: 'shop' }, why: 'Events outside tsmesh-system' },
  { attrs: { resource: 'events', verb: 'delete', namespace: NS, name: 'anything' }, why: 'deleting Events' },
  { attrs: { group: 'tsmesh.io', resource: 'trafficpolicies', verb: 'update', namespace: 'shop' }, why: 'changing a policy\'s spec' },
  { attrs: { group: 'tsmesh.io', resource: 'authorizationpolicies', verb: 'delete', namespace: 'shop' }, why: 'deleting policies' },
  { attrs: { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'patch', name: 'other-webhook' }, why: 'other webhooks' },
  { attrs: { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'update', name: WEBHOOK }, why: 'replacing its webhook (patch is enough)' },
  { attrs: { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'delete', name: WEBHOOK }, why: 'deleting its webhook' },
  { attrs: { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', verb: 'create' }, why: 'registering webhooks' },
  { attrs: { group: 'admissionregistration.k8s.io', resource: 'validatingwebhookconfigurations', verb: 'patch', name: WEBHOOK }, why: 'validating webhooks' },
  { attrs: { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', verb: 'create' }, why: 'creating cluster roles' },
  { attrs: { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', verb: 'create' }, why: 'binding cluster roles' },
  { attrs: { group: 'rbac.authorization.k8s.io', resource: 'roles', verb: 'update', namespace: NS, name: 'tsmesh-control-plane' }, why: 'widening its own role' },
  { attrs: { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', verb: 'escalate', name: 'tsmesh-control-plane' }, why: 'escalation' },
  { attrs: { group: 'tap.tsmesh.io', resource: 'tap', verb: 'watch', namespace: 'shop' }, why: 'tapping by its own right (it asks RBAC about its callers)' },
  { attrs: { resource: 'users', verb: 'impersonate', name: 'admin' }, why: 'impersonation' },
  { attrs: { resource: 'nodes', verb: 'get', name: 'node-1' }, why: 'nodes' },
  { attrs: { group: 'apps', resource: 'deployments', verb: 'update', namespace: NS, name: 'tsmesh-control-plane' }, why: 'changing its own Deployment' },
  { attrs: { group: '*', resource: '*', verb: '*' }, why: 'everything' },
];

function show(a: V1ResourceAttributes): string {
  return `${a.verb} ${a.group ? `${a.group}/` : ''}${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.name ? ` ${a.name}` : ''}${a.namespace ? ` in ${a.namespace}` : ' (all namespaces)'}`;
}

async function allowed(kc: KubeConfig, attrs: V1ResourceAttributes): Promise<boolean> {
  const review = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: attrs } } });
  return review.status?.allowed === true;
}

describe('control plane RBAC', function () {
  it('grants exactly the permissions the control plane needs (no wildcards, no cluster-wide secrets)', function () {
    const objects = readManifests().map((d) => d.object);
    const granted = grantedByManifests(objects);
    const wanted = GRANTS.flatMap(tuples).sort();
    assert.deepEqual(granted, wanted);
    for (const t of granted) assert.ok(!t.split(' ').slice(1, 4).includes('*'), `wildcard group, resource or verb: ${t}`);
    assert.ok(!granted.some((t) => t.startsWith('* core secrets ')), 'no secrets through the ClusterRole');
  });

  describe('with the control plane\'s own ServiceAccount token (real kube-apiserver)', function () {
    this.timeout(120_000);
    let server: ApiServer | undefined;
    let plane: RunningControlPlane | undefined;
    let agent: Agent | undefined;
    /** The control plane's credentials, as in its pod. */
    let own: KubeConfig;
    /** A ServiceAccount in the same namespace with no role: what the manifests' RBAC adds. */
    let bare: KubeConfig;

    before(async function () {
      skipWithoutApiServer(this);
      server = await startApiServer();
      const kc = server.kc;
      for (const d of applyOrder(readManifests().filter((x) => x.file === 'namespace.yaml' || x.file === 'control-plane.yaml'))) {
        await serverSideApply(kc, d.object);
      }
      await createNamespace(kc, 'shop', { 'tsmesh.io/inject': 'enabled' });
      await createServiceAccount(kc, 'shop', 'web');
      await createServiceAccount(kc, NS, 'bare');
      // No audience: the API server's own audiences, as in the pod's default token.
      own = kubeConfigWithToken(kc, (await requestToken(kc, NS, CONTROL_PLANE_NAME, [], 3600)).token, CONTROL_PLANE_NAME);
      bare = kubeConfigWithToken(kc, (await requestToken(kc, NS, 'bare', [], 3600)).token, 'bare');
    });
    after(async function () {
      await agent?.close();
      await plane?.close();
      await server?.stop();
    });

    it('the CA accepts a workload\'s token, reviewed with the control plane\'s token', async function () {
      const { ca } = await newRootCa();
      plane = await startControlPlane({
        authority: ca,
        authenticator: new KubernetesAuthenticator('cluster.local', apiServerTokenReviewer(own)),
        log: silentLogger,
        host: '127.0.0.1',
        port: 0,
        adminPort: 0,
      });
      agent = new Agent({ connect: { ca: ca.trustBundle.toPem(), servername: 'tsmesh-control-plane.tsmesh-system.svc' } });
      const { token } = await requestToken(server!.kc, 'shop', 'web', 'tsmesh-ca', 600);
      const res = await request(`https://127.0.0.1:${plane.caPort}/v1/certificates`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ csr: buildCsrPem(newKey()) }),
      });
      const json = (await res.body.json()) as { spiffeId?: string };
      assert.equal(res.statusCode, 200, JSON.stringify(json));
      assert.equal(json.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
    });

    it('without the manifests\' RBAC the same review is forbidden', async function () {
      const { token } = await requestToken(server!.kc, 'shop', 'web', 'tsmesh-ca', 600);
      const authn = new KubernetesAuthenticator('cluster.local', apiServerTokenReviewer(bare));
      await assert.rejects(authn.authenticate(token), (e: unknown) => e instanceof CaError && e.code === 'authenticator-unavailable' && /forbidden|403/i.test(e.message));
    });

    it('reads what discovery watches, and writes the trust bundle, its leader Lease and the injector\'s caBundle', async function () {
      const core = own.makeApiClient(CoreV1Api);
      await core.listServiceForAllNamespaces();
      await core.listPodForAllNamespaces();
      await core.listNamespace();
      await own.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces();

      const cm = await core.createNamespacedConfigMap({ namespace: 'shop', body: { metadata: { name: 'tsmesh-trust-bundle' }, data: { 'root-cert.pem': 'one' } } });
      await core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'tsmesh-trust-bundle', body: { ...cm, data: { 'root-cert.pem': 'two' } } });

      const coordination = own.makeApiClient(CoordinationV1Api);
      const lease = await coordination.createNamespacedLease({ namespace: NS, body: { metadata: { name: LEASE }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } } });
      await coordination.readNamespacedLease({ namespace: NS, name: LEASE });
      await coordination.replaceNamespacedLease({ namespace: NS, name: LEASE, body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b' } } });

      await registerMutatingWebhook(server!.kc, { name: WEBHOOK, url: 'https://127.0.0.1:9443/inject', caBundle: 'old' });
      try {
        await own.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: WEBHOOK });
        const caBundle = Buffer.from('new').toString('base64');
        await kubeRequest(own, 'PATCH', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK}`, [{ op: 'replace', path: '/webhooks/0/clientConfig/caBundle', value: caBundle }], 'application/json-patch+json');
        const after = await server!.kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: WEBHOOK });
        assert.equal(after.webhooks?.[0]?.clientConfig.caBundle, caBundle);
      } finally {
        await deleteMutatingWebhook(server!.kc, WEBHOOK);
      }
    });

    it('is refused what it must not do (403 from the API server)', async function () {
      const core = own.makeApiClient(CoreV1Api);
      const forbidden = (e: unknown): boolean => isStatus(e, 403) || (e instanceof ApiRequestError && e.status === 403);
      await assert.rejects(core.readNamespacedSecret({ namespace: 'kube-system', name: 'anything' }), forbidden, 'reading a secret in kube-system');
      await assert.rejects(core.listSecretForAllNamespaces(), forbidden, 'listing secrets');
      await assert.rejects(core.readNamespacedSecret({ namespace: NS, name: 'tsmesh-ca' }), forbidden, 'reading the CA Secret');
      await assert.rejects(core.deleteNamespacedPod({ namespace: 'shop', name: 'web' }), forbidden, 'deleting a pod');
      await assert.rejects(
        own.makeApiClient(RbacAuthorizationV1Api).createClusterRole({ body: { metadata: { name: 'mine' }, rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }] } }),
        forbidden,
        'creating a ClusterRole',
      );
      await registerMutatingWebhook(server!.kc, { name: 'other-webhook', url: 'https://127.0.0.1:9443/other', caBundle: 'old' });
      try {
        await assert.rejects(
          kubeRequest(own, 'PATCH', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/other-webhook', [{ op: 'replace', path: '/webhooks/0/clientConfig/caBundle', value: 'eA==' }], 'application/json-patch+json'),
          forbidden,
          'patching another MutatingWebhookConfiguration',
        );
      } finally {
        await deleteMutatingWebhook(server!.kc, 'other-webhook');
      }
    });

    it('SelfSubjectAccessReview allows every grant, each only through the manifests\' roles', async function () {
      const missing: string[] = [];
      const unearned: string[] = [];
      for (const attrs of grantChecks()) {
        if (!(await allowed(own, attrs))) missing.push(show(attrs));
        if (await allowed(bare, attrs)) unearned.push(show(attrs));
      }
      assert.deepEqual(missing, [], 'the control plane lacks these permissions');
      assert.deepEqual(unearned, [], 'a ServiceAccount without the manifests\' roles already has these, so the test proves nothing for them');
    });

    it('SelfSubjectAccessReview denies a sample of what the control plane must not do', async function () {
      const granted: string[] = [];
      for (const { attrs, why } of DENIED) if (await allowed(own, attrs)) granted.push(`${show(attrs)} (${why})`);
      assert.deepEqual(granted, [], 'the control plane may do these, and should not');
    });
  });
});
