// Calls to pods' own addresses under STRICT mTLS on the real kernel: a
// meshed pod's IP dialled directly, the addresses a headless Service's DNS
// would answer, a StatefulSet pod's DNS name, pods of one workload calling
// each other, a port of a meshed pod that no Service names, a meshed pod's
// admin port (never captured), and a pod without a sidecar. `tsmesh control-plane --mesh-file` streams the Services to
// proxies that run without --config-file, with `tsmesh init` redirects, apps
// as uid 1000 (test/netns/stream-lab.ts). There is no DNS in the lab: curl's
// --resolve gives the name the address the cluster's DNS would.
//
//   web     10.244.50.11  sa web     a client, allowed by the policy on db
//   other   10.244.50.12  sa other   a client the policy does not list
//   db-0    10.244.50.21  sa db      "StatefulSet" pods: mesh-app.ts on 8080 (HTTP) and 9000 (TCP echo)
//   db-1    10.244.50.22  sa db
//   legacy  10.244.50.31             a pod without a sidecar (no init, no proxy), mesh-app.ts
//
// Services: db, headless, port 8080 (http), endpoints db-0 and db-1, with an
// AuthorizationPolicy allowing demo/web and demo/db; db-rw, ClusterIP
// 10.96.50.10, port 80 -> 8080, endpoint db-0 (so db-0:8080 is in two
// Services: the headless one names it); legacy, headless, port 8080, its
// endpoint without an identity. Port 9000 is in no Service.
//
// Skipped, with the reason printed, where network namespaces cannot be
// created.
import assert from 'node:assert/strict';
import { ADMIN_PORT, APP_ECHO_PORT, APP_HTTP_PORT, APP_USER, K8S_NAMESPACE, TRUST_DOMAIN } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { total } from '../../lib/prom-text.js';
import { StreamLab, type MeshDocument } from './stream-lab.js';

const DB_RW_IP = '10.96.50.10';
const PODS = [
  { name: 'web', host: 11, serviceAccount: 'web' },
  { name: 'other', host: 12, serviceAccount: 'other' },
  { name: 'db-0', host: 21, serviceAccount: 'db', app: true },
  { name: 'db-1', host: 22, serviceAccount: 'db', app: true },
  { name: 'legacy', host: 31, serviceAccount: 'legacy', app: true, meshed: false },
];
const ADDR: Record<string, string> = Object.fromEntries(PODS.map((p) => [p.name, `10.244.50.${p.host}`]));
const endpoint = (pod: string) => ({ address: ADDR[pod]!, serviceAccount: PODS.find((p) => p.name === pod)!.serviceAccount });
const HTTP_PORT = { port: APP_HTTP_PORT, name: 'http', protocol: 'http', targetPort: APP_HTTP_PORT };
const MESH: MeshDocument = {
  services: [
    { name: 'db', namespace: K8S_NAMESPACE, clusterIPs: [], ports: [HTTP_PORT], endpoints: [endpoint('db-0'), endpoint('db-1')] },
    { name: 'db-rw', namespace: K8S_NAMESPACE, clusterIPs: [DB_RW_IP], ports: [{ ...HTTP_PORT, port: 80 }], endpoints: [endpoint('db-0')] },
    { name: 'legacy', namespace: K8S_NAMESPACE, clusterIPs: [], ports: [HTTP_PORT], endpoints: [{ address: ADDR['legacy']! }] },
  ],
  authorizationPolicies: [
    { name: 'db-callers', namespace: K8S_NAMESPACE, targetRef: { kind: 'Service', name: 'db' }, rules: [{ serviceAccounts: [`${K8S_NAMESPACE}/web`, `${K8S_NAMESPACE}/db`] }] },
  ],
};
const id = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/${K8S_NAMESPACE}/sa/${sa}`;

/** Connects to HOST PORT, writes a line, prints what came back once the line is echoed (or the error), for the opaque port. */
const ECHO_CLIENT = `
const [host, port] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port), timeout: 5000 });
let got = '';
s.setEncoding('utf8');
s.on('data', (d) => { got += d; if (got.includes('\\n')) { console.log(JSON.stringify({ echoed: got })); s.end(); } });
s.on('close', () => { if (!got.includes('\\n')) console.log(JSON.stringify({ error: 'closed', echoed: got })); });
s.on('timeout', () => { console.log(JSON.stringify({ error: 'timeout', echoed: got })); s.destroy(); });
s.on('error', (e) => console.log(JSON.stringify({ error: e.message })));
s.write('over mTLS?\\n');
`;

describe('calls to pod addresses and headless Services under STRICT mTLS (real kernel)', function () {
  this.timeout(180_000);
  let lab: StreamLab | undefined;

  /** curl from a pod as its app (uid 1000: its connections take the redirect). */
  const curlFrom = (pod: string, url: string, extra: string[] = []) => lab!.curl(pod, [...extra, url], APP_USER);
  const metric = async (pod: string, name: string, labels: Record<string, string>): Promise<number> => total(await lab!.metrics(pod), name, labels);

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await StreamLab.create({ tag: 'pa', subnet: '10.244.50', serviceCidr: '10.96.50.0/24', pods: PODS, mesh: MESH });
    console.log(`      the lab is up in ${lab.setupMs} ms`);
    // The policy is in db's proxies' config, the Services in the clients'.
    for (const pod of ['db-0', 'db-1']) await lab.waitConfig(pod, 'the db-callers policy', (c) => (c.inbound.authorization ?? []).some((a) => a.name === 'db-callers'));
    for (const pod of ['web', 'other', 'db-0']) await lab.waitConfig(pod, 'service db', (c) => c.services.some((s) => s.name === 'db' && s.endpoints.length === 2));
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it("a call to a meshed pod's IP goes over mTLS: the pod's proxy counts it from the caller's SPIFFE ID", async function () {
    const inbound = { direction: 'inbound', source_identity: id('web'), destination_identity: id('db'), tls: 'true', response_code: '200' };
    const before = await metric('db-0', 'tsmesh_requests_total', inbound);
    const r = await curlFrom('web', `http://${ADDR['db-0']}:${APP_HTTP_PORT}/direct`);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    const body = JSON.parse(r.body) as { app: string; path: string; peer: string };
    // db-0's app was reached over loopback: by its proxy, which took mTLS.
    assert.deepEqual({ app: body.app, path: body.path, peer: body.peer }, { app: 'db-0', path: '/direct', peer: '127.0.0.1' });
    assert.equal((await metric('db-0', 'tsmesh_requests_total', inbound)) - before, 1);
    // web's proxy counted it under the headless Service (db-0:8080 is in db-rw too), to db's identity.
    const outbound = { direction: 'outbound', destination_service: `db.${K8S_NAMESPACE}`, destination_identity: id('db'), tls: 'true', response_code: '200' };
    assert.ok((await metric('web', 'tsmesh_requests_total', outbound)) >= 1);
    assert.equal(await metric('web', 'tsmesh_requests_total', { direction: 'outbound', destination_service: `db-rw.${K8S_NAMESPACE}` }), 0);
  });

  it("HTTP/2 with prior knowledge to a meshed pod's IP reaches that pod over mTLS too", async function () {
    const inbound = { direction: 'inbound', source_identity: id('web'), tls: 'true', response_code: '200' };
    const before = await metric('db-1', 'tsmesh_requests_total', inbound);
    const r = await curlFrom('web', `http://${ADDR['db-1']}:${APP_HTTP_PORT}/h2`, ['--http2-prior-knowledge']);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal(r.httpVersion, '2');
    const body = JSON.parse(r.body) as { app: string; protocol: string; peer: string };
    assert.deepEqual({ app: body.app, protocol: body.protocol, peer: body.peer }, { app: 'db-1', protocol: '2.0', peer: '127.0.0.1' });
    assert.equal((await metric('db-1', 'tsmesh_requests_total', inbound)) - before, 1);
  });

  it('the AuthorizationPolicy on the headless Service applies: a caller it does not list gets 403 from the pod\'s proxy', async function () {
    const r = await curlFrom('other', `http://${ADDR['db-0']}:${APP_HTTP_PORT}/from-other`, ['-i']);
    assert.equal(r.status, 403, `${r.error} ${r.body}`);
    assert.match(r.body, /x-tsmesh-error: denied/i);
    assert.equal(lab!.appRequests('db-0', '/from-other').length, 0, 'the app never saw it');
    assert.ok((await metric('db-0', 'tsmesh_authz_denials_total', { source_identity: id('other') })) >= 1);
  });

  it("a headless Service's addresses, and a StatefulSet pod's DNS name, each reach that pod", async function () {
    // What the cluster's DNS answers for db.demo.svc: the Service's endpoints, as web's proxy has them.
    const db = (await lab!.config('web'))!.services.find((s) => s.name === 'db')!;
    const answers = db.endpoints.map((e) => e.address).sort();
    assert.deepEqual(answers, [ADDR['db-0'], ADDR['db-1']]);
    for (const [i, address] of answers.entries()) {
      const r = await curlFrom('web', `http://${address}:${APP_HTTP_PORT}/headless`);
      assert.equal(r.status, 200, `${address}: ${r.error} ${r.body}`);
      assert.equal((JSON.parse(r.body) as { app: string }).app, `db-${i}`);
    }
    const name = `db-1.db.${K8S_NAMESPACE}.svc.cluster.local`;
    const r = await curlFrom('web', `http://${name}:${APP_HTTP_PORT}/by-name`, ['--resolve', `${name}:${APP_HTTP_PORT}:${ADDR['db-1']}`]);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal((JSON.parse(r.body) as { app: string }).app, 'db-1');
  });

  it('pods of one StatefulSet call each other by pod IP, each proxy seeing the other\'s identity', async function () {
    for (const [from, to] of [
      ['db-0', 'db-1'],
      ['db-1', 'db-0'],
    ] as const) {
      const inbound = { direction: 'inbound', source_identity: id('db'), tls: 'true', response_code: '200' };
      const before = await metric(to, 'tsmesh_requests_total', inbound);
      const r = await curlFrom(from, `http://${ADDR[to]}:${APP_HTTP_PORT}/peer-from-${from}`);
      assert.equal(r.status, 200, `${from} -> ${to}: ${r.error} ${r.body}`);
      assert.equal((JSON.parse(r.body) as { app: string }).app, to);
      assert.equal((await metric(to, 'tsmesh_requests_total', inbound)) - before, 1);
    }
  });

  it('a port of a meshed pod that no Service names is carried as opaque TCP over mTLS', async function () {
    const inbound = { direction: 'inbound', tls: 'true' };
    const before = await metric('db-1', 'tsmesh_tcp_connections_opened_total', inbound);
    const r = await lab!.exec('web', [process.execPath, '-e', ECHO_CLIENT, ADDR['db-1']!, String(APP_ECHO_PORT)], APP_USER, { timeoutMs: 20_000 });
    assert.deepEqual(JSON.parse(r.stdout.trim()), { echoed: 'over mTLS?\n' }, r.stderr);
    assert.equal((await metric('db-1', 'tsmesh_tcp_connections_opened_total', inbound)) - before, 1);
    assert.ok((await metric('web', 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: `db.${K8S_NAMESPACE}`, tls: 'true' })) >= 1);
  });

  it("a meshed pod's admin port, which its init never captures, is reached in plain HTTP (a meshed Prometheus scraping proxies)", async function () {
    const passthrough = { direction: 'outbound', destination_service: 'passthrough', tls: 'false' };
    const before = await metric('web', 'tsmesh_tcp_connections_opened_total', passthrough);
    const r = await curlFrom('web', `http://${ADDR['db-1']}:${ADMIN_PORT}/metrics`);
    assert.equal(r.status, 200, `${r.error} ${r.body.slice(0, 200)}`);
    assert.match(r.body, /^tsmesh_requests_total/m);
    assert.equal((await metric('web', 'tsmesh_tcp_connections_opened_total', passthrough)) - before, 1);
  });

  it('a pod without a sidecar is passed through in plain HTTP, the app seeing the caller itself', async function () {
    const passthrough = { direction: 'outbound', destination_service: 'passthrough', tls: 'false' };
    const before = await metric('web', 'tsmesh_tcp_connections_opened_total', passthrough);
    const r = await curlFrom('web', `http://${ADDR['legacy']}:${APP_HTTP_PORT}/plain`);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    // No proxy on legacy's side: its app saw web's own address, and plain HTTP is all it speaks.
    const body = JSON.parse(r.body) as { app: string; peer: string };
    assert.deepEqual({ app: body.app, peer: body.peer }, { app: 'legacy', peer: ADDR['web'] });
    assert.equal((await metric('web', 'tsmesh_tcp_connections_opened_total', passthrough)) - before, 1);
  });

  it('the ClusterIP of a Service that lists the same pod still works beside it, and nothing addressed to it left a pod', async function () {
    const r = await curlFrom('web', `http://${DB_RW_IP}/rw`);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal((JSON.parse(r.body) as { app: string }).app, 'db-0');
    assert.ok((await metric('web', 'tsmesh_requests_total', { direction: 'outbound', destination_service: `db-rw.${K8S_NAMESPACE}`, tls: 'true' })) >= 1);
    assert.equal(await lab!.clusterIpLeaks('web'), 0);
  });
});
