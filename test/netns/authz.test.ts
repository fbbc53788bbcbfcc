// Inbound policy end to end on the real kernel: `tsmesh control-plane
// --mesh-file` streams what the test writes into the mesh file (the mesh
// section, namespaces: and workloads: entries carrying the annotations a
// Namespace or a pod would, AuthorizationPolicies) to proxies on the
// discovery stream; every pod has `tsmesh init` redirects and its own
// sidecar and identity (test/netns/stream-lab.ts), except "plain", a pod
// without a sidecar that stands for a caller outside the mesh and for
// kubelet, whose probes reach the proxy's admin port (never redirected).
//
//   web    10.244.31.11  sa web     a caller (curl, mesh-client.ts as uid 1000)
//   other  10.244.31.12  sa other   a caller no policy names
//   api    10.244.31.21  sa api     test/netns/mesh-app.ts: HTTP on 8080, TCP echo on 9000;
//                                   TSMESH_APP_PROBES as the injector writes it
//   plain  10.244.31.30             no sidecar
//
// Service api: ClusterIP 10.96.31.10, port 80 -> 8080 (http), 9000 -> 9000 (tcp).
// Skipped, with the reason printed, where network namespaces cannot be made.
import assert from 'node:assert/strict';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { total } from '../../lib/prom-text.js';
import { ADMIN_PORT, APP_ECHO_PORT, APP_HTTP_PORT, APP_USER, K8S_NAMESPACE } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { StreamLab, type MeshDocument } from './stream-lab.js';

const NS = K8S_NAMESPACE;
const API_IP = '10.96.31.10';
const PROBES = { '/app-health/app/readyz': { httpGet: { port: APP_HTTP_PORT, path: '/healthz' } } };

describe('inbound policy through the control plane, between pods in network namespaces (real kernel)', function () {
  this.timeout(180_000);
  let lab: StreamLab | undefined;

  const services = (): MeshDocument['services'] => [
    {
      name: 'api',
      namespace: NS,
      clusterIPs: [API_IP],
      ports: [
        { port: 80, name: 'http', protocol: 'http', targetPort: APP_HTTP_PORT },
        { port: APP_ECHO_PORT, name: 'echo', protocol: 'tcp', targetPort: APP_ECHO_PORT },
      ],
      endpoints: [lab!.endpoint('api')],
    },
  ];

  /** Writes the mesh file and waits until api's proxy runs what `ready` looks for. */
  async function apply(doc: Omit<MeshDocument, 'services'>, what: string, ready: (c: ProxyConfig) => boolean): Promise<void> {
    await lab!.writeMesh({ ...doc, services: services() });
    await lab!.waitConfig('api', what, ready);
  }

  const curl = (pod: string, args: string[]) => lab!.curl(pod, ['-i', ...args], APP_USER);
  const header = (body: string, name: string): string | undefined => new RegExp(`^${name}: *(.*?)\\r?$`, 'im').exec(body)?.[1];
  // Payloads end their first line before any space: no HTTP request line, so the inbound port's detection takes them for opaque TCP at once.
  const echo = async (pod: string, host: string, payload: string): Promise<{ got?: string; error?: string }> => {
    const r = await lab!.exec(pod, [process.execPath, '--import', 'tsx', 'test/netns/mesh-client.ts', 'echo', host, String(APP_ECHO_PORT), payload], APP_USER);
    return JSON.parse(r.stdout.trim() || '{}') as { got?: string; error?: string };
  };
  const apiMetric = async (name: string, labels: Record<string, string>): Promise<number> => total(await lab!.metrics('api'), name, labels);

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await StreamLab.create({
      tag: 'z',
      subnet: '10.244.31',
      serviceCidr: '10.96.31.0/24',
      pods: [
        { name: 'web', host: 11, serviceAccount: 'web' },
        { name: 'other', host: 12, serviceAccount: 'other' },
        { name: 'api', host: 21, serviceAccount: 'api', app: true, proxyEnv: { TSMESH_APP_PROBES: JSON.stringify(PROBES) } },
        { name: 'plain', host: 30, serviceAccount: 'plain', meshed: false },
      ],
      mesh: { services: [] },
    });
    await apply({}, 'service api', () => true);
    await lab.waitConfig('web', 'service api', (c) => c.services.some((s) => s.name === 'api'));
    console.log(`      the mesh is up in ${lab.setupMs} ms`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it("default inbound policy deny (the workload's annotation): mesh callers get 403 and TCP is closed, while kubelet's probes through the admin port still pass", async function () {
    await apply({ workloads: [{ namespace: NS, serviceAccount: 'api', annotations: { 'tsmesh.io/default-inbound-policy': 'deny' } }] }, 'default policy deny', (c) => c.inbound.defaultPolicy === 'deny');
    const denied = await curl('web', [`http://${API_IP}/orders?from=web-denied`]);
    assert.equal(denied.status, 403, denied.body);
    assert.equal(header(denied.body, 'x-tsmesh-error'), 'denied');
    assert.equal(header(denied.body, 'x-tsmesh-policy'), 'default:deny');
    assert.match(denied.body, /the default inbound policy of this workload is deny/);
    assert.equal(lab!.appRequests('api', '/orders?from=web-denied').length, 0);
    assert.deepEqual(await echo('web', API_IP, 'over-tcp\n'), { got: '' }, 'the TCP connection was closed without an echo');

    // kubelet: from outside the pod to its admin port, as the injected probes go.
    for (const path of ['/live', '/ready', '/app-health/app/readyz']) {
      const r = await lab!.curl('plain', [`http://${lab!.addr['api']}:${ADMIN_PORT}${path}`]);
      assert.equal(r.status, 200, `${path}: ${r.error} ${r.body}`);
    }
    assert.equal(lab!.appRequests('api', '/healthz').length, 1, "the probe reached the app through the proxy's admin port");
    assert.equal(await apiMetric('tsmesh_authz_denials_total', { source_identity: lab!.identity('web'), policy: 'default:deny', protocol: 'http' }), 1);

    // An ALLOW policy opens what it names and nothing else.
    await apply(
      {
        workloads: [{ namespace: NS, serviceAccount: 'api', annotations: { 'tsmesh.io/default-inbound-policy': 'deny' } }],
        authorizationPolicies: [{ name: 'web-reads', namespace: NS, targetRef: { kind: 'Service', name: 'api' }, rules: [{ serviceAccounts: [`${NS}/web`], methods: ['GET'] }] }],
      },
      'web-reads',
      (c) => c.inbound.authorization?.[0]?.name === 'web-reads',
    );
    assert.equal((await curl('web', [`http://${API_IP}/orders?from=web-allowed`])).status, 200);
    assert.equal((await curl('web', ['-X', 'POST', `http://${API_IP}/orders?from=web-post`])).status, 403);
    const fromOther = await curl('other', [`http://${API_IP}/orders?from=other`]);
    assert.equal(fromOther.status, 403);
    assert.equal(header(fromOther.body, 'x-tsmesh-policy'), 'web-reads');
  });

  it('DENY by path wins over ALLOW whatever the spelling of the path; AUDIT passes what it matches and counts it', async function () {
    await apply(
      {
        authorizationPolicies: [
          { name: 'callers', namespace: NS, targetRef: { kind: 'ServiceAccount', name: 'api' }, rules: [{ namespaces: [NS] }] },
          { name: 'no-admin', namespace: NS, targetRef: { kind: 'Service', name: 'api' }, action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] },
          { name: 'try-no-delete', namespace: NS, targetRef: { kind: 'Service', name: 'api' }, action: 'AUDIT', rules: [{ methods: ['DELETE'] }] },
        ],
      },
      'three policies',
      (c) => (c.inbound.authorization ?? []).length === 3 && c.inbound.defaultPolicy === undefined,
    );
    assert.equal((await curl('web', [`http://${API_IP}/orders`])).status, 200);
    for (const path of ['/admin', '/admin/users', '//admin', '/orders/../admin', '/%61dmin']) {
      const r = await curl('web', ['--path-as-is', `http://${API_IP}${path}`]);
      assert.equal(r.status, 403, `${path}: ${r.body}`);
      assert.equal(header(r.body, 'x-tsmesh-policy'), 'no-admin');
    }
    assert.equal(lab!.appRequests('api', '/admin').length + lab!.appRequests('api', '//admin').length + lab!.appRequests('api', '/%61dmin').length, 0);
    assert.equal((await curl('web', ['-X', 'DELETE', `http://${API_IP}/orders/1?audited`])).status, 200);
    assert.equal(lab!.appRequests('api', '/orders/1?audited').length, 1);
    assert.equal(await apiMetric('tsmesh_authz_audits_total', { policy: 'try-no-delete', rule: '0' }), 1);
    assert.equal(await apiMetric('tsmesh_authz_denials_total', { policy: 'no-admin', rule: '0' }), 5);
    // A rule about paths says nothing of opaque TCP: the echo port stays open to the namespace.
    assert.deepEqual(await echo('web', API_IP, 'tcp-passes\n'), { got: 'tcp-passes\n' });
  });

  it("mTLS mode per namespace, workload and port: plain callers where PERMISSIVE lets them in, refused where STRICT", async function () {
    const target = `http://${lab!.addr['api']}:${APP_HTTP_PORT}/plain`;
    const strict = await curl('plain', [target]);
    assert.equal(strict.status, 403, 'STRICT by default');
    assert.equal(header(strict.body, 'x-tsmesh-error'), 'mtls-required');

    await apply({ namespaces: [{ name: NS, annotations: { 'tsmesh.io/mtls-mode': 'PERMISSIVE' } }] }, 'namespace PERMISSIVE', (c) => c.inbound.mtlsMode === 'PERMISSIVE');
    assert.equal((await curl('plain', [`${target}?ns=permissive`])).status, 200);
    assert.deepEqual(await echo('plain', lab!.addr['api']!, 'plain-tcp\n'), { got: 'plain-tcp\n' });

    await apply(
      {
        namespaces: [{ name: NS, annotations: { 'tsmesh.io/mtls-mode': 'PERMISSIVE' } }],
        workloads: [{ namespace: NS, serviceAccount: 'api', annotations: { 'tsmesh.io/port-mtls-modes': `${APP_HTTP_PORT}=STRICT` } }],
      },
      'port 8080 STRICT',
      (c) => c.inbound.portMtlsModes?.[APP_HTTP_PORT] === 'STRICT',
    );
    assert.equal((await curl('plain', [`${target}?port=strict`])).status, 403);
    assert.deepEqual(await echo('plain', lab!.addr['api']!, 'still-plain\n'), { got: 'still-plain\n' }, 'port 9000 stays PERMISSIVE');

    await apply(
      {
        namespaces: [{ name: NS, annotations: { 'tsmesh.io/mtls-mode': 'PERMISSIVE' } }],
        workloads: [{ namespace: NS, serviceAccount: 'api', annotations: { 'tsmesh.io/mtls-mode': 'STRICT' } }],
      },
      'workload STRICT',
      (c) => c.inbound.mtlsMode === 'STRICT' && c.inbound.portMtlsModes === undefined,
    );
    assert.equal((await curl('plain', [`${target}?workload=strict`])).status, 403);
    assert.equal((await curl('web', [`http://${API_IP}/mesh?workload=strict`])).status, 200, 'mesh callers are served');
  });

  it("gives the app the caller's verified identity, never a forged one: from a mesh caller, and from a plain caller (PERMISSIVE)", async function () {
    await apply({ namespaces: [{ name: NS, annotations: { 'tsmesh.io/mtls-mode': 'PERMISSIVE' } }] }, 'namespace PERMISSIVE', (c) => c.inbound.mtlsMode === 'PERMISSIVE' && c.inbound.portMtlsModes === undefined);
    const forged = ['-H', 'x-tsmesh-client-id: spiffe://cluster.local/ns/kube-system/sa/admin', '-H', 'x-forwarded-client-cert: By=x;URI=spiffe://cluster.local/ns/kube-system/sa/admin'];
    assert.equal((await curl('web', [...forged, `http://${API_IP}/whoami?from=web`])).status, 200);
    const [fromWeb] = lab!.appRequests('api', '/whoami?from=web');
    assert.equal(fromWeb?.clientId, lab!.identity('web'));
    assert.match(fromWeb?.clientCert ?? '', new RegExp(`^By=${lab!.identity('api')};Hash=[0-9a-f]{64};URI=${lab!.identity('web')}$`));

    assert.equal((await curl('plain', [...forged, `http://${lab!.addr['api']}:${APP_HTTP_PORT}/whoami?from=plain`])).status, 200);
    const [fromPlain] = lab!.appRequests('api', '/whoami?from=plain');
    assert.ok(fromPlain, 'the plain request reached the app');
    assert.equal(fromPlain.clientId, undefined);
    assert.equal(fromPlain.clientCert, undefined);
  });
});

