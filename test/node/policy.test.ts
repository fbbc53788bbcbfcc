// Zero trust on a real kubelet: the default inbound policy, AuthorizationPolicy
// (ALLOW, DENY, AUDIT; by caller, method, path, header and port), mTLS modes
// per namespace and per port, and the caller's identity for the app. Where
// proxy/inbound/authz-pair.test.ts and test/netns/authz.test.ts prove each
// on sockets and network namespaces, here the policies are objects the API
// server stores and the control plane watches, the settings are annotations
// on Namespaces and pods, the real webhook injects the pods, tsmesh-init's
// iptables rules bring every call to the proxies, CoreDNS and kube-proxy
// carry the Service names, and the kubelet probes the apps under `deny`.
//
// One node (test/node/node.sh) for the file, the mesh installed by the CLI,
// the apps of the test apps' image (test/node/build.sh). The callers live in
// one meshed namespace (pol-callers: ServiceAccounts client, other and bad)
// and call the workload of each check, which has a namespace of its own;
// a caller without a sidecar lives in a namespace the injector leaves alone
// (pol-plain). Everything is applied at the start so that the pods come up
// together; each check deletes its namespace when it ends, and the last test
// waits until they are gone, stops the node and finds nothing of it left.
// Every check has an allowed and a denied case, and reads what the app saw
// and what the serving proxy counted. Skipped, saying why, when the machine
// cannot run the node (nodeTier()).
import assert from 'node:assert/strict';
import { find, total } from '../../lib/prom-text.js';
import { INBOUND_POLICY_ANNOTATIONS, INJECT_LABEL, OVERRIDE_ANNOTATIONS } from '../../contract/names.js';
import type { CallResult, Operation } from '../netns/grpc-calls.js';
import { sleep, waitFor } from './node.js';
import { APPS, HTTP_PORT, IDLE, deployment, httpApp, meshOnNode, podTemplate, podTools, service, spiffe, tcpProbe, type HttpAnswer, type Pod } from './workloads.js';

const NS = {
  callers: 'pol-callers',
  deny: 'pol-deny',
  http: 'pol-http',
  tcp: 'pol-tcp',
  grpc: 'pol-grpc',
  mtls: 'pol-mtls',
  perm: 'pol-perm',
  plain: 'pol-plain',
} as const;
type Check = Exclude<keyof typeof NS, 'callers'>;
/** How long one check may take, its pods' start included. */
const CHECK_MS = 240_000;
const CALLER = { client: spiffe(NS.callers, 'client'), other: spiffe(NS.callers, 'other'), bad: spiffe(NS.callers, 'bad') };
const TCP_PORT = 9000;
const GREETING_PORT = 9001;
const GRPC_PORT = 50051;
const STRICT_PORT = 8082;
/** What a caller sends to pass for someone else. */
const FORGED = { 'x-tsmesh-client-id': 'spiffe://cluster.local/ns/tsmesh-system/sa/admin', 'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/x/sa/y;Hash=00;URI=spiffe://cluster.local/ns/tsmesh-system/sa/admin' };

// --- the workloads ---------------------------------------------------------

const namespace = (name: string, meshed: boolean, annotations: Record<string, string> = {}): object => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, ...(meshed ? { labels: { [INJECT_LABEL]: 'enabled' } } : {}), annotations },
});
const serviceAccount = (ns: string, name: string): object => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } });
const authorizationPolicy = (ns: string, name: string, service: string, action: 'ALLOW' | 'DENY' | 'AUDIT', rules: object[]): object => ({
  apiVersion: 'tsmesh.io/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: ns },
  spec: { targetRef: { kind: 'Service', name: service }, action, rules },
});
/** A meshed namespace with one workload `name` (ServiceAccount `name`) and its Service. */
const workload = (ns: string, name: string, template: object, ports: object[], annotations: Record<string, string> = {}): object[] => [
  namespace(ns, true, annotations),
  serviceAccount(ns, name),
  deployment(ns, name, 1, template),
  service(ns, name, name, ports),
];
/** Only the client may call web in pol-deny: applied by the test, once it saw the default deny. */
const LET_CLIENT = (rule: object = {}): object => authorizationPolicy(NS.deny, 'let-client', 'web', 'ALLOW', [{ serviceAccounts: [`${NS.callers}/client`], ...rule }]);

const WORKLOADS: Record<keyof typeof NS, object[]> = {
  callers: [
    namespace(NS.callers, true),
    // The client's pod lists the greeting port as opaque (no protocol detection of what it dials there).
    ...(['client', 'other', 'bad'] as const).flatMap((sa) => [
      serviceAccount(NS.callers, sa),
      deployment(NS.callers, sa, 1, podTemplate(sa, sa, { command: IDLE }, {}, sa === 'client' ? { [OVERRIDE_ANNOTATIONS.opaquePorts]: String(GREETING_PORT) } : {})),
    ]),
  ],
  // Default deny on the namespace; the kubelet's HTTP readiness probe of the app goes through the proxy's admin port.
  deny: workload(NS.deny, 'web', podTemplate('web', 'web', { ...httpApp(), readinessProbe: { httpGet: { path: '/ready', port: HTTP_PORT } } }), [{ name: 'http', port: 80, targetPort: HTTP_PORT }], {
    [INBOUND_POLICY_ANNOTATIONS.defaultInboundPolicy]: 'deny',
  }),
  // ALLOW by method and path prefix, ALLOW by method, path and header, DENY one caller, AUDIT another.
  http: [
    ...workload(NS.http, 'api', podTemplate('api', 'api', httpApp()), [{ name: 'http', port: 80, targetPort: HTTP_PORT }]),
    authorizationPolicy(NS.http, 'public-read', 'api', 'ALLOW', [{ methods: ['GET'], pathPrefixes: ['/public'] }]),
    authorizationPolicy(NS.http, 'submit', 'api', 'ALLOW', [{ methods: ['POST'], paths: ['/submit'], headers: { 'x-api-key': 'let-me-in' } }]),
    authorizationPolicy(NS.http, 'block-bad', 'api', 'DENY', [{ serviceAccounts: [`${NS.callers}/bad`] }]),
    authorizationPolicy(NS.http, 'watch-other', 'api', 'AUDIT', [{ serviceAccounts: [`${NS.callers}/other`], methods: ['GET'] }]),
  ],
  // A TCP echo behind a port declared tcp: the client may connect to it; a DENY rule about GETs does not touch TCP.
  // A server that speaks first behind a port left to detection, which both callers may reach.
  tcp: [
    ...workload(NS.tcp, 'echo', podTemplate('echo', 'echo', { ...httpApp({ TCP_ECHO_PORT: String(TCP_PORT), TCP_GREETING_PORT: String(GREETING_PORT) }), ports: [HTTP_PORT, TCP_PORT, GREETING_PORT], readinessProbe: tcpProbe(TCP_PORT) }), [
      { name: 'tcp-echo', port: TCP_PORT, targetPort: TCP_PORT, appProtocol: 'tcp' },
      { name: 'db', port: GREETING_PORT, targetPort: GREETING_PORT },
    ]),
    authorizationPolicy(NS.tcp, 'echo-client', 'echo', 'ALLOW', [
      { serviceAccounts: [`${NS.callers}/client`], ports: [TCP_PORT] },
      { serviceAccounts: [`${NS.callers}/client`, `${NS.callers}/other`], ports: [GREETING_PORT] },
    ]),
    authorizationPolicy(NS.tcp, 'no-get', 'echo', 'DENY', [{ methods: ['GET'] }]),
  ],
  // gRPC Echo (test/netns/grpc-service.ts): only the client; its grpc readiness probe passes under the policy.
  grpc: [
    ...workload(NS.grpc, 'echo', podTemplate('echo', 'echo', { command: ['node', `${APPS}/grpc-app.mjs`, String(GRPC_PORT), 'echo'], ports: [GRPC_PORT], readinessProbe: { grpc: { port: GRPC_PORT } } }), [
      { name: 'grpc', port: GRPC_PORT, targetPort: GRPC_PORT, appProtocol: 'grpc' },
    ]),
    authorizationPolicy(NS.grpc, 'echo-client', 'echo', 'ALLOW', [{ serviceAccounts: [`${NS.callers}/client`] }]),
  ],
  // STRICT (the default) but for port 8080, which the pods' annotation makes PERMISSIVE.
  mtls: workload(
    NS.mtls,
    'mixed',
    podTemplate('mixed', 'mixed', { ...httpApp({ ALSO_PORTS: String(STRICT_PORT) }), ports: [HTTP_PORT, STRICT_PORT] }, {}, { [INBOUND_POLICY_ANNOTATIONS.portMtlsModes]: `${HTTP_PORT}=PERMISSIVE` }),
    [
      { name: 'http', port: HTTP_PORT, targetPort: HTTP_PORT },
      { name: 'http-strict', port: STRICT_PORT, targetPort: STRICT_PORT },
    ],
  ),
  // PERMISSIVE by the namespace's annotation.
  perm: workload(NS.perm, 'web', podTemplate('web', 'web', httpApp()), [{ name: 'http', port: 80, targetPort: HTTP_PORT }], { [INBOUND_POLICY_ANNOTATIONS.mtlsMode]: 'PERMISSIVE' }),
  // A caller without a sidecar: its namespace is not labelled.
  plain: [namespace(NS.plain, false), deployment(NS.plain, 'plain', 1, podTemplate('plain', 'default', { command: IDLE }))],
};
/** The workloads each check waits for (the callers' too). */
const ROLLOUTS: Record<Check, [keyof typeof NS, string][]> = {
  deny: [['deny', 'web']],
  http: [['http', 'api']],
  tcp: [['tcp', 'echo']],
  grpc: [['grpc', 'echo']],
  mtls: [
    ['mtls', 'mixed'],
    ['perm', 'web'],
    ['plain', 'plain'],
  ],
  perm: [],
  plain: [],
};

describe('real node: zero-trust policies through tsmesh (test/node)', function () {
  this.timeout(CHECK_MS);
  const { kc, timed, running, teardownTest } = meshOnNode(Object.values(WORKLOADS).flat());
  const { json, onePod, inPod, calls, metrics, assertInjected, diagnoseOnFailure } = podTools(kc);
  const apply = (objects: object[]): Promise<string> => kc(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });
  const callers: Record<keyof typeof CALLER, string> = { client: '', other: '', bad: '' };
  /** HTTP requests from a caller of pol-callers (calls.ts req). */
  const request = (caller: keyof typeof CALLER, requests: { url: string; method?: string; headers?: Record<string, string> }[]): Promise<HttpAnswer[]> =>
    calls<HttpAnswer[]>(NS.callers, callers[caller], ['req', '10000', JSON.stringify(requests)]);
  const body = (a: HttpAnswer): NonNullable<Exclude<HttpAnswer['body'], string>> => (typeof a.body === 'object' ? a.body : {});
  /** A denied request: 403 from the proxy, the deciding policy named. */
  const assertDenied = (a: HttpAnswer | undefined, policy: string): void => {
    assert.deepEqual([a?.status, a?.meshError, a?.policy], [403, 'denied', policy], JSON.stringify(a));
  };
  /** Repeats a call until its answer is the one wanted (a policy reaches the proxies a moment after the API server stores it). */
  const eventually = <T>(what: string, call: () => Promise<T>, wanted: (answer: T) => boolean): Promise<T> =>
    waitFor(
      async () => {
        const answer = await call();
        return wanted(answer) ? answer : undefined;
      },
      60_000,
      what,
    );

  let callersReady = false;
  /** Waits for a check's workloads and the callers (all applied in before()), and asserts who was injected. */
  async function ready(check: Check): Promise<void> {
    await timed(`${check} pods Ready`, async () => {
      const waits: [keyof typeof NS, string][] = [...(callersReady ? [] : (['client', 'other', 'bad'] as const).map((c): [keyof typeof NS, string] => ['callers', c])), ...ROLLOUTS[check]];
      for (const [ns, name] of waits) await kc(['-n', NS[ns], 'rollout', 'status', `deployment/${name}`, '--timeout=180s'], { timeoutMs: 200_000 });
    });
    if (!callersReady) {
      await assertInjected(NS.callers);
      for (const c of ['client', 'other', 'bad'] as const) callers[c] = await onePod(NS.callers, c);
      callersReady = true;
    }
    for (const [ns] of ROLLOUTS[check]) if (ns !== 'plain') await assertInjected(NS[ns]);
  }
  /**
   * The hooks of a check's describe(): its pods (and the callers) Ready before its tests, what the pods of its
   * namespaces and the callers' did printed when a test failed, its namespaces deleted after (without waiting;
   * the teardown test waits until every one is gone).
   */
  const checkHooks = (check: Check, ...more: Check[]): void => {
    const namespaces = [check, ...more].map((c) => NS[c]);
    before(() => ready(check));
    afterEach(diagnoseOnFailure(...namespaces, NS.callers));
    after(async () => {
      if (running()) await kc(['delete', 'namespace', ...namespaces, '--wait=false', '--ignore-not-found']);
    });
  };

  describe('default deny on a namespace, an ALLOW policy for one ServiceAccount, and a policy the control plane refuses', function () {
    const url = `http://web.${NS.deny}.svc.cluster.local`;
    let web: string;
    let readySince: string | undefined;
    const readyCondition = async (): Promise<{ status: string; lastTransitionTime?: string; restarts: number }> => {
      const p = await json<Pod>(['-n', NS.deny, 'get', 'pod', web]);
      const c = p.status.conditions?.find((x) => x.type === 'Ready');
      return { status: c?.status ?? 'absent', ...(c?.lastTransitionTime ? { lastTransitionTime: c.lastTransitionTime } : {}), restarts: p.status.containerStatuses?.find((x) => x.name === 'app')?.restartCount ?? -1 };
    };
    checkHooks('deny');
    before(async function () {
      web = await onePod(NS.deny, 'web');
      readySince = (await readyCondition()).lastTransitionTime;
    });

    it('a caller no policy names gets 403 default:deny; once an ALLOW policy names its ServiceAccount it gets through, and another caller still gets 403 from that policy', async function () {
      const [denied] = await request('client', [{ url: `${url}/before` }]);
      console.log(`      client before any policy: ${denied?.status} ${denied?.meshError} ${denied?.policy}`);
      assertDenied(denied, 'default:deny');
      await apply([LET_CLIENT()]);
      const [allowed] = await timed('ALLOW policy in force', () => eventually('the client to be let through by let-client', () => request('client', [{ url: `${url}/after` }]), ([a]) => a?.status === 200));
      assert.deepEqual([body(allowed!).path, body(allowed!).clientId], ['/after', CALLER.client], 'the app saw the call, from the client\'s verified identity');
      const [other] = await request('other', [{ url: `${url}/other` }]);
      assertDenied(other, 'let-client');
      const m = await metrics(NS.deny, web);
      const counts = {
        defaultDeny: total(m, 'tsmesh_authz_denials_total', { policy: 'default:deny', source_identity: CALLER.client, protocol: 'http' }),
        letClient: total(m, 'tsmesh_authz_denials_total', { policy: 'let-client', source_identity: CALLER.other, protocol: 'http' }),
        clientOk: total(m, 'tsmesh_requests_total', { direction: 'inbound', source_identity: CALLER.client, response_code: '200', tls: 'true' }),
      };
      console.log(`      web's proxy: ${JSON.stringify(counts)}`);
      assert.ok(counts.defaultDeny >= 1, 'the default deny counted');
      assert.equal(counts.letClient, 1, 'the other caller\'s denial counted against let-client');
      assert.ok(counts.clientOk >= 1, 'the client\'s call counted');
    });

    it('the kubelet\'s readiness probes pass under deny: the pod became Ready and stayed so', async function () {
      // The probe runs every second, through the proxy's admin port to the app, which counts every request it gets:
      // with no call of the test meanwhile, what it counts are the kubelet's probes. A probe the policy refused would
      // have turned the pod unready by now.
      const seen = async (): Promise<number> => (JSON.parse(await inPod(NS.deny, web, ['node', '-e', "fetch('http://127.0.0.1:8081/stats').then((r) => r.text()).then((t) => process.stdout.write(t))"])) as { requests: number }).requests;
      const before = await seen();
      await sleep(5000);
      const probes = (await seen()) - before;
      const now = await readyCondition();
      console.log(`      web Ready ${now.status} since ${now.lastTransitionTime}, app restarts ${now.restarts}; ${probes} probes reached the app in 5 s`);
      assert.deepEqual([now.status, now.lastTransitionTime, now.restarts], ['True', readySince, 0], 'Ready the whole time, never restarted');
      assert.ok(probes >= 3, `only ${probes} of the kubelet's probes (one a second) reached the app`);
    });

    it('a policy edited into a shape the control plane refuses gets Accepted=False saying why, and the last accepted spec stays in force', async function () {
      // The schema takes any path beginning with "/"; the control plane refuses one that is not normalized.
      // Applied, this spec would allow the client only /admin, and deny /still.
      await apply([LET_CLIENT({ paths: ['/x/../admin'] })]);
      const condition = await timed('status of a refused policy', () =>
        waitFor(
          async () => {
            const p = await json<{ metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string }[] } }>(['-n', NS.deny, 'get', 'authorizationpolicy', 'let-client']);
            const c = p.status?.conditions?.find((x) => x.type === 'Accepted');
            return p.status?.observedGeneration === p.metadata.generation && c?.status === 'False' ? c : undefined;
          },
          60_000,
          'let-client to be marked Accepted=False',
        ),
      );
      console.log(`      ${condition.reason}: ${condition.message}`);
      assert.equal(condition.reason, 'InvalidSpec');
      assert.match(condition.message, /spec\.rules\[0\]\.paths\[0\]: "\/x\/\.\.\/admin" is not a normalized path/);
      assert.match(condition.message, /write "\/admin"/);
      assert.match(condition.message, /the spec accepted at generation 1 stays in force/);
      // The first spec is still the one the proxy enforces.
      const [still] = await request('client', [{ url: `${url}/still` }]);
      assert.deepEqual([still?.status, body(still!).clientId], [200, CALLER.client], JSON.stringify(still));
      assertDenied((await request('other', [{ url: `${url}/still` }]))[0], 'let-client');
      const printed = await kc(['-n', NS.deny, 'get', 'authorizationpolicies']);
      console.log(`      kubectl get authorizationpolicies:\n${printed.replace(/^/gm, '        ')}`);
      assert.match(printed, /let-client\s+Service\s+web\s+ALLOW\s+False\s+InvalidSpec/);
    });
  });

  describe('AuthorizationPolicy by method, path and header; DENY over ALLOW; AUDIT', function () {
    const url = `http://api.${NS.http}.svc.cluster.local`;
    checkHooks('http');

    it('GET under /public and POST /submit with the key pass; POST /public, /publicity, another path or key get 403; DENY wins over ALLOW for bad; AUDIT denies nothing and counts', async function () {
      const allow = 'public-read,submit';
      // The policies were applied with the workload; the proxy may hear of them after the pod is Ready.
      await eventually('the ALLOW policies to be in force', () => request('client', [{ url: `${url}/private/first` }]), ([a]) => a?.status === 403);
      const [get, post, publicity, submit, wrongKey, noKey, priv] = await request('client', [
        { url: `${url}/public/items?page=2` },
        { url: `${url}/public`, method: 'POST' },
        { url: `${url}/publicity` },
        { url: `${url}/submit`, method: 'POST', headers: { 'x-api-key': 'let-me-in' } },
        { url: `${url}/submit`, method: 'POST', headers: { 'x-api-key': 'guess' } },
        { url: `${url}/submit`, method: 'POST' },
        { url: `${url}/private` },
      ]);
      for (const a of [get, post, publicity, submit, wrongKey, noKey, priv]) console.log(`      client ${a!.url.slice(url.length)}: ${a!.status} ${a!.meshError ?? ''} ${a!.policy ?? ''}`);
      assert.deepEqual([get?.status, body(get!).method, body(get!).path, body(get!).clientId], [200, 'GET', '/public/items?page=2', CALLER.client], JSON.stringify(get));
      assert.deepEqual([submit?.status, body(submit!).method, body(submit!).path], [200, 'POST', '/submit'], JSON.stringify(submit));
      for (const a of [post, publicity, wrongKey, noKey, priv]) assertDenied(a, allow);
      assert.match(String(post?.body), /may not call/, 'the reason in the body');

      const [bad] = await request('bad', [{ url: `${url}/public/items` }]);
      assertDenied(bad, 'block-bad');
      const [audited] = await request('other', [{ url: `${url}/public/audited` }]);
      assert.deepEqual([audited?.status, body(audited!).clientId], [200, CALLER.other], JSON.stringify(audited));

      const m = await metrics(NS.http, await onePod(NS.http, 'api'));
      const counts = {
        allowDenials: total(m, 'tsmesh_authz_denials_total', { policy: allow, source_identity: CALLER.client, protocol: 'http', port: String(HTTP_PORT), rule: '' }),
        denyBad: total(m, 'tsmesh_authz_denials_total', { policy: 'block-bad', rule: '0', source_identity: CALLER.bad }),
        audits: total(m, 'tsmesh_authz_audits_total', { policy: 'watch-other', rule: '0', source_identity: CALLER.other }),
        auditsOfOthers: total(m, 'tsmesh_authz_audits_total', { source_identity: CALLER.client }),
        auditDenials: total(m, 'tsmesh_authz_denials_total', { source_identity: CALLER.other }),
      };
      console.log(`      api's proxy: ${JSON.stringify(counts)}`);
      assert.ok(counts.allowDenials >= 5, 'the five denied requests of the client (and the first probe of the policies)');
      assert.equal(counts.denyBad, 1);
      assert.equal(counts.audits, 1);
      assert.equal(counts.auditsOfOthers, 0, 'AUDIT counts only the calls its rule matches');
      assert.equal(counts.auditDenials, 0, 'AUDIT denied nothing');
    });
  });

  describe('opaque TCP judged at L4', function () {
    const target = `echo.${NS.tcp}.svc.cluster.local:${TCP_PORT}`;
    checkHooks('tcp');

    it('the allowed identity connects and gets its bytes echoed (a DENY rule about GETs does not touch TCP); another is closed', async function () {
      const text = 'over opaque TCP, through two proxies';
      type Echo = { echoed: string; ended: string; error?: string; ms: number };
      const ok = await eventually('the client\'s bytes to be echoed', () => calls<Echo>(NS.callers, callers.client, ['tcp', '10000', target, text]), (r) => r.ended === 'echoed');
      const refused = await calls<Echo>(NS.callers, callers.other, ['tcp', '10000', target, text]);
      console.log(`      client: ${ok.ended} in ${ok.ms} ms; other: ${refused.ended} ${refused.error ?? ''} after ${refused.ms} ms, ${refused.echoed.length} bytes back`);
      assert.equal(ok.echoed, text);
      assert.deepEqual([refused.ended, refused.echoed], ['closed', ''], 'the other caller\'s connection closed, nothing echoed');
      const m = await metrics(NS.tcp, await onePod(NS.tcp, 'echo'));
      const counts = {
        denied: total(m, 'tsmesh_authz_denials_total', { policy: 'echo-client', source_identity: CALLER.other, protocol: 'tcp', port: String(TCP_PORT) }),
        deniedClient: total(m, 'tsmesh_authz_denials_total', { source_identity: CALLER.client }),
        opened: total(m, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound', tls: 'true' }),
      };
      console.log(`      echo's proxy: ${JSON.stringify(counts)}`);
      assert.equal(counts.denied, 1);
      assert.equal(counts.deniedClient, 0, 'the DENY rule about GETs never matched a TCP connection');
      assert.ok(counts.opened >= 1, 'the client\'s connection counted as opaque TCP over mTLS');
    });

    it('a server that speaks first, on a port left to detection: the caller whose pod lists it in tsmesh.io/opaque-ports gets the greeting at once, another after the sniff timeout', async function () {
      const proxy = (await json<{ spec: { initContainers: { name: string; env?: { name: string; value?: string }[] }[] } }>(['-n', NS.callers, 'get', 'pod', callers.client])).spec.initContainers.find((c) => c.name === 'tsmesh-proxy');
      assert.equal(proxy?.env?.find((e) => e.name === 'TSMESH_OPAQUE_PORTS')?.value, String(GREETING_PORT), 'the injector handed the annotation to the client\'s proxy');
      const greet = `echo.${NS.tcp}.svc.cluster.local:${GREETING_PORT}`;
      type Echo = { echoed: string; ended: string; ms: number };
      const first = async (caller: 'client' | 'other'): Promise<Echo[]> => {
        const out: Echo[] = [];
        for (let i = 0; i < 3; i++) out.push(await calls<Echo>(NS.callers, callers[caller], ['tcp', '10000', greet, '']));
        return out;
      };
      const [opaque, sniffed] = [await first('client'), await first('other')];
      console.log(`      greeting after: client (opaque) ${opaque.map((g) => g.ms).join(', ')} ms; other (detected) ${sniffed.map((g) => g.ms).join(', ')} ms`);
      for (const g of [...opaque, ...sniffed]) assert.deepEqual([g.ended, g.echoed.startsWith('hello from echo-')], ['echoed', true], JSON.stringify(g));
      assert.ok(Math.max(...opaque.map((g) => g.ms)) < 500, 'the client\'s proxy waited for bytes the client never sends');
      assert.ok(Math.min(...sniffed.map((g) => g.ms)) >= 900, 'the other caller\'s proxy sniffs the port (the reason for the annotation)');
    });
  });

  describe('gRPC (@grpc/grpc-js) under an ALLOW policy', function () {
    const target = `echo.${NS.grpc}.svc.cluster.local:${GRPC_PORT}`;
    checkHooks('grpc');

    it('the allowed caller gets OK and the app sees its identity; another gets PERMISSION_DENIED', async function () {
      const ops: Operation[] = [{ op: 'unary', request: { text: 'hello' }, options: { deadlineMs: 10_000 } }];
      const [ok] = await eventually('the client\'s call to succeed', () => calls<CallResult[]>(NS.callers, callers.client, ['grpc', target, JSON.stringify(ops)]), ([r]) => r?.code === 0);
      const [denied] = await calls<CallResult[]>(NS.callers, callers.other, ['grpc', target, JSON.stringify(ops)]);
      console.log(`      client: ${ok!.code}; other: ${denied!.code} "${denied!.details}"`);
      assert.equal(ok!.replies[0]?.text, 'hello');
      assert.equal(ok!.replies[0]?.metadata['x-tsmesh-client-id'], CALLER.client);
      assert.equal(denied!.code, 7, 'PERMISSION_DENIED');
      assert.match(denied!.details, /may not call/);
      const m = await metrics(NS.grpc, await onePod(NS.grpc, 'echo'));
      const denials = total(m, 'tsmesh_authz_denials_total', { policy: 'echo-client', source_identity: CALLER.other, protocol: 'http' });
      const byStatus = find(m, 'tsmesh_requests_total').filter((s) => s.labels['direction'] === 'inbound' && s.labels['source_identity'] === CALLER.other).map((s) => `${s.labels['response_code']}/${s.labels['grpc_status']}`);
      console.log(`      echo's proxy: ${denials} denials of other; other's calls by status ${JSON.stringify(byStatus)}`);
      assert.equal(denials, 1);
      assert.deepEqual(byStatus, ['200/7'], 'the denied call counted as PERMISSION_DENIED');
    });
  });

  describe('mTLS modes and the caller\'s identity for the app', function () {
    const mixed = `http://mixed.${NS.mtls}.svc.cluster.local`;
    const perm = `http://web.${NS.perm}.svc.cluster.local`;
    let plain: string;
    checkHooks('mtls', 'perm', 'plain');
    before(async function () {
      plain = await onePod(NS.plain, 'plain');
      const p = await json<Pod>(['-n', NS.plain, 'get', 'pod', plain]);
      assert.deepEqual(p.spec.initContainers ?? [], [], 'the plain caller has no sidecar');
    });

    const plainRequests = (requests: { url: string; headers?: Record<string, string> }[]): Promise<HttpAnswer[]> => calls<HttpAnswer[]>(NS.plain, plain, ['req', '10000', JSON.stringify(requests)]);

    it('a caller without a sidecar is refused by a STRICT port, let in by a namespace set PERMISSIVE and by the one port set PERMISSIVE', async function () {
      const [strict, permissiveNs, permissivePort] = await plainRequests([{ url: `${mixed}:${STRICT_PORT}/strict` }, { url: `${perm}/ns` }, { url: `${mixed}:${HTTP_PORT}/port` }]);
      for (const a of [strict, permissiveNs, permissivePort]) console.log(`      plain ${a!.url}: ${a!.status ?? a!.error} ${a!.meshError ?? ''}`);
      assert.deepEqual([strict?.status, strict?.meshError], [403, 'mtls-required'], JSON.stringify(strict));
      for (const a of [permissiveNs, permissivePort]) assert.deepEqual([a?.status, body(a!).clientId, body(a!).clientCert], [200, null, null], JSON.stringify(a));
      // Plain text counted as such by the serving proxies.
      const plainOk = total(await metrics(NS.perm, await onePod(NS.perm, 'web')), 'tsmesh_requests_total', { direction: 'inbound', response_code: '200', tls: 'false' });
      assert.ok(plainOk >= 1, `${plainOk} plain calls counted by web's proxy`);
    });

    it('forged x-tsmesh-client-id and x-forwarded-client-cert never reach the app: from a meshed caller it sees the verified identity, from a plain one none', async function () {
      const meshed = await request('client', [
        { url: `${mixed}:${STRICT_PORT}/forged`, headers: FORGED },
        { url: `${perm}/forged`, headers: FORGED },
      ]);
      const fromPlain = await plainRequests([
        { url: `${perm}/forged`, headers: FORGED },
        { url: `${mixed}:${HTTP_PORT}/forged`, headers: FORGED },
      ]);
      for (const a of [...meshed, ...fromPlain]) console.log(`      ${a.url}: ${a.status} clientId ${body(a).clientId} xfcc ${body(a).clientCert}`);
      for (const a of meshed) {
        assert.deepEqual([a.status, body(a).clientId], [200, CALLER.client], JSON.stringify(a));
        assert.match(body(a).clientCert ?? '', new RegExp(`;URI=${CALLER.client.replace(/[/.]/g, '\\$&')}$`), 'the proxy\'s own x-forwarded-client-cert');
        assert.doesNotMatch(body(a).clientCert ?? '', /tsmesh-system|Hash=00/, 'nothing of the forged one');
      }
      for (const a of fromPlain) assert.deepEqual([a.status, body(a).clientId, body(a).clientCert], [200, null, null], JSON.stringify(a));
    });
  });

  teardownTest(Object.values(NS));
});
