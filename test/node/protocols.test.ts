// The protocols users carry through tsmesh, on a real kubelet: gRPC,
// WebSocket, a StatefulSet behind a headless Service, and a replica that
// hangs. Where test/netns proves each on network namespaces, here every part
// of a cluster takes part: CoreDNS names the Services and the StatefulSet's
// pods, kube-proxy's rules carry ClusterIPs, the real webhook injects the
// pods of labelled namespaces, the kubelet's probes go through the injected
// proxy, tsmesh-init's iptables rules redirect the apps' connections.
//
// One node (test/node/node.sh) for the file; the mesh installed by the CLI;
// the apps are test/netns and test/node/apps bundled into the test apps'
// image by test/node/build.sh (@grpc/grpc-js and ws are devDependencies, not
// in the tsmesh image). Each check has a namespace of its own, applied at
// the start so that their pods come up together, and deleted when the check
// ends; the last test waits until they are gone, stops the node and finds
// nothing of it left. Skipped, saying why, when the machine cannot run the
// node (nodeTier()).
import assert from 'node:assert/strict';
import { find, total, type Sample } from '../../lib/prom-text.js';
import type { CallResult, Operation } from '../netns/grpc-calls.js';
import { WS_ECHO_RESULT } from '../netns/ws-echo.js';
import { waitFor } from './node.js';
import { APPS, HTTP_PORT, IDLE, deployment, httpApp, meshOnNode, podTemplate, podTools, service, spiffe, tcpProbe, type HttpAnswer, type Pod } from './workloads.js';

const NS = { grpc: 'proto-grpc', ws: 'proto-ws', sts: 'proto-sts', hang: 'proto-hang' } as const;
/** How long one check may take, its pods' start included. */
const CHECK_MS = 240_000;

// --- the workloads ---------------------------------------------------------

/** A meshed namespace, its ServiceAccounts, and a client: an app container that idles, for kubectl exec. */
function meshedNamespace(ns: string, serviceAccounts: string[]): object[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'tsmesh.io/inject': 'enabled' } } },
    ...['client', ...serviceAccounts].map((name) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } })),
    deployment(ns, 'client', 1, podTemplate('client', 'client', { command: IDLE })),
  ];
}

const GRPC_PORT = 50051;
const WS_PORT = 8090;

const WORKLOADS: Record<keyof typeof NS, object[]> = {
  // Echo (test/netns/grpc-service.ts) behind a Service with a port declared grpc and one left to detection.
  grpc: [
    ...meshedNamespace(NS.grpc, ['echo']),
    deployment(NS.grpc, 'echo', 1, podTemplate('echo', 'echo', { command: ['node', `${APPS}/grpc-app.mjs`, String(GRPC_PORT), 'echo'], ports: [GRPC_PORT], readinessProbe: { grpc: { port: GRPC_PORT } } })),
    service(NS.grpc, 'echo', 'echo', [
      { name: 'grpc', port: GRPC_PORT, targetPort: GRPC_PORT, appProtocol: 'grpc' },
      { name: 'detected', port: 50052, targetPort: GRPC_PORT },
    ]),
  ],
  // The ws package's echo server (test/netns/ws-app.ts) behind a port named http-* and a port left to detection.
  ws: [
    ...meshedNamespace(NS.ws, ['ws']),
    deployment(NS.ws, 'ws', 1, podTemplate('ws', 'ws', { command: ['node', `${APPS}/ws-app.mjs`, String(WS_PORT), '8092'], ports: [WS_PORT], readinessProbe: tcpProbe(WS_PORT) })),
    service(NS.ws, 'ws-http', 'ws', [{ name: 'http-ws', port: 80, targetPort: WS_PORT }]),
    service(NS.ws, 'ws-detected', 'ws', [{ name: 'web', port: 80, targetPort: WS_PORT }]),
  ],
  // A StatefulSet of two behind its headless Service, and a pod the injector leaves alone (a plain caller).
  sts: [
    ...meshedNamespace(NS.sts, ['web']),
    service(NS.sts, 'web', 'web', [{ name: 'http', port: HTTP_PORT, targetPort: HTTP_PORT }], { clusterIP: 'None' }),
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'web', namespace: NS.sts },
      spec: { serviceName: 'web', replicas: 2, podManagementPolicy: 'Parallel', selector: { matchLabels: { app: 'web' } }, template: podTemplate('web', 'web', httpApp()) },
    },
    deployment(NS.sts, 'plain', 1, podTemplate('plain', 'client', { command: IDLE }, { 'tsmesh.io/inject': 'disabled' })),
  ],
  // Two replicas of slow (one will hang), behind slow under a 2 s route timeout and behind slow-bare without one;
  // steady, which the same client calls meanwhile. slow answers in 200 ms: slower than the balancer's default
  // estimate times the callers, which let a hung replica never measured look the cheaper one.
  hang: [
    ...meshedNamespace(NS.hang, ['slow', 'steady']),
    deployment(NS.hang, 'slow', 2, podTemplate('slow', 'slow', httpApp({ DELAY_MS: '200' }))),
    deployment(NS.hang, 'steady', 1, podTemplate('steady', 'steady', httpApp())),
    service(NS.hang, 'slow', 'slow', [{ name: 'http', port: 80, targetPort: HTTP_PORT }]),
    service(NS.hang, 'slow-bare', 'slow', [{ name: 'http', port: 80, targetPort: HTTP_PORT }]),
    service(NS.hang, 'steady', 'steady', [{ name: 'http', port: 80, targetPort: HTTP_PORT }]),
    { apiVersion: 'tsmesh.io/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'slow', namespace: NS.hang }, spec: { targetRef: { kind: 'Service', name: 'slow' }, timeout: '2s' } },
  ],
};
/** The workloads each check waits for. */
const ROLLOUTS: Record<keyof typeof NS, string[]> = {
  grpc: ['deployment/client', 'deployment/echo'],
  ws: ['deployment/client', 'deployment/ws'],
  sts: ['deployment/client', 'deployment/plain', 'statefulset/web'],
  hang: ['deployment/client', 'deployment/slow', 'deployment/steady'],
};

interface LoadResult {
  url: string;
  sent: number;
  statuses: Record<string, number>;
  meshErrors: Record<string, number>;
  pods: Record<string, number>;
  errors: Record<string, number>;
  ms: Record<string, { p50: number; p99: number; max: number }>;
  longestGapMs: number;
}

describe('real node: gRPC, WebSocket, a StatefulSet and a hanging replica through tsmesh (test/node)', function () {
  this.timeout(CHECK_MS);
  const { kc, timed, running, teardownTest } = meshOnNode(Object.values(WORKLOADS).flat());
  const { readyPods, onePod, inPod, calls, metrics, assertInjected, diagnoseOnFailure } = podTools(kc);

  /** Waits for a check's workloads (they were applied in before()), then asserts every pod of the namespace was injected. */
  async function ready(check: keyof typeof NS): Promise<void> {
    await timed(`${check} pods Ready`, async () => {
      for (const w of ROLLOUTS[check]) await kc(['-n', NS[check], 'rollout', 'status', w, '--timeout=180s'], { timeoutMs: 200_000 });
    });
    await assertInjected(NS[check]);
  }
  /** Deletes a check's namespace without waiting; the teardown test waits until every one is gone. */
  const cleanUp = async (check: keyof typeof NS): Promise<void> => {
    if (running()) await kc(['delete', 'namespace', NS[check], '--wait=false', '--ignore-not-found']);
  };

  describe('gRPC (@grpc/grpc-js both ends) to a Service by its DNS name', function () {
    const ns = NS.grpc;
    const target = (port: number): string => `echo.${ns}.svc.cluster.local:${port}`;
    let client: string;
    before(async function () {
      await ready('grpc');
      client = await onePod(ns, 'client');
    });
    afterEach(diagnoseOnFailure(ns));
    after(() => cleanUp('grpc'));

    it('unary OK, a status with its message and trailing metadata, a server stream and a deadline exceeded, on a grpc port and a detected one', async function () {
      const fail = { code: 5, message: 'no such order: ünï %41 ✓', trailers: { 'x-reason': 'order-missing' } };
      const ops: Operation[] = [
        { op: 'unary', request: { text: 'hello' }, options: { metadata: { 'x-caller': 'protocols' }, deadlineMs: 10_000 } },
        { op: 'unary', request: { text: 'fail', fail }, options: { deadlineMs: 10_000 } },
        { op: 'server-stream', request: { text: 'stream', count: 5, intervalMs: 50 }, options: { deadlineMs: 10_000 } },
        { op: 'unary', request: { text: 'never', hang: true }, options: { deadlineMs: 1000 } },
      ];
      for (const port of [GRPC_PORT, 50052]) {
        const [ok, failed, stream, late] = await timed(`gRPC calls to :${port}`, () => calls<CallResult[]>(ns, client, ['grpc', target(port), JSON.stringify(ops)]));
        console.log(`      :${port}: unary ${ok!.code} in ${ok!.ms.toFixed(0)} ms; error ${failed!.code} "${failed!.details}" ${JSON.stringify(failed!.trailers)}; stream of ${stream!.replies.length}; deadline ${late!.code} after ${late!.ms.toFixed(0)} ms`);
        assert.equal(ok!.code, 0, ok!.details);
        assert.equal(ok!.replies[0]?.text, 'hello');
        assert.equal(ok!.replies[0]?.metadata['x-caller'], 'protocols', 'the client\'s metadata reached the app');
        assert.equal(ok!.replies[0]?.metadata['x-tsmesh-client-id'], spiffe(ns, 'client'), 'the echo\'s proxy verified the client\'s identity');
        assert.equal(failed!.code, fail.code);
        assert.equal(failed!.details, fail.message);
        assert.equal(failed!.trailers['x-reason'], 'order-missing');
        assert.equal(stream!.code, 0, stream!.details);
        assert.deepEqual(stream!.replies.map((r) => r.n), [0, 1, 2, 3, 4]);
        assert.equal(late!.code, 4, `DEADLINE_EXCEEDED, got ${late!.code} ${late!.details}`);
        assert.ok(late!.ms >= 900 && late!.ms < 10_000, `the deadline of 1 s ended the call after ${late!.ms} ms`);
      }
      // The app saw both hung calls cancelled (it logs each cancellation).
      const echo = await onePod(ns, 'echo');
      const cancelled = await waitFor(
        async () => {
          const log = await kc(['-n', ns, 'logs', echo, '-c', 'app']);
          const n = log.split('\n').filter((l) => l.includes('"event":"cancelled"') && l.includes('"text":"never"')).length;
          return n >= 2 ? n : undefined;
        },
        10_000,
        'the echo app to see the calls past their deadline cancelled',
      );
      console.log(`      the app saw ${cancelled} calls cancelled at their deadline`);
    });

    it('grpc_status in both proxies\' /metrics: the echo pod\'s inbound from the client\'s identity over mTLS, and the client\'s outbound', async function () {
      const byStatus = (samples: Sample[], keep: (l: Record<string, string>) => boolean): Record<string, number> => {
        const out: Record<string, number> = {};
        for (const s of find(samples, 'tsmesh_requests_total').filter((x) => keep(x.labels))) out[s.labels['grpc_status']!] = (out[s.labels['grpc_status']!] ?? 0) + s.value;
        return out;
      };
      const id = { client: spiffe(ns, 'client'), echo: spiffe(ns, 'echo') };
      const server = byStatus(await metrics(ns, await onePod(ns, 'echo')), (l) => l['direction'] === 'inbound' && l['source_identity'] === id.client && l['destination_identity'] === id.echo && l['tls'] === 'true');
      const outbound = byStatus(await metrics(ns, client), (l) => l['direction'] === 'outbound' && l['source_identity'] === id.client && l['destination_service']!.startsWith(`echo.${ns}`));
      console.log(`      calls by grpc_status: echo's proxy (inbound) ${JSON.stringify(server)}, client's proxy (outbound) ${JSON.stringify(outbound)}`);
      for (const [side, counts] of [['inbound', server], ['outbound', outbound]] as const) {
        assert.equal(counts['0'], 4, `${side}: OK, two unary calls and two streams`);
        assert.equal(counts['5'], 2, `${side}: NOT_FOUND, the two failed calls`);
        // Past its deadline a call ends DEADLINE_EXCEEDED where a proxy's own deadline fired first, CANCELLED where the caller's reset came first.
        assert.equal((counts['4'] ?? 0) + (counts['1'] ?? 0), 2, `${side}: the two calls past their deadline`);
      }
    });
  });

  describe('WebSocket (the ws package both ends) through a port declared http and a detected one', function () {
    const ns = NS.ws;
    let client: string;
    before(async function () {
      await ready('ws');
      client = await onePod(ns, 'client');
    });
    afterEach(diagnoseOnFailure(ns));
    after(() => cleanUp('ws'));

    it('1,000 echoed messages in order, a 1 MiB binary frame, ping/pong and close codes both ways', async function () {
      for (const svc of ['ws-http', 'ws-detected']) {
        const t0 = Date.now();
        const r = JSON.parse(await timed(`WebSocket echo via ${svc}`, () => inPod(ns, client, ['node', `${APPS}/ws-client.mjs`, 'echo', `ws://${svc}.${ns}.svc.cluster.local/${svc}`]))) as object;
        console.log(`      ${svc}: ${JSON.stringify(r)} in ${Date.now() - t0} ms`);
        assert.deepEqual(r, WS_ECHO_RESULT);
      }
      // The app saw, on each path, every message and the client's own close code.
      const log = await kc(['-n', ns, 'logs', await onePod(ns, 'ws'), '-c', 'app']);
      const closes = log.split('\n').filter((l) => l.includes('"event":"ws-close"')).map((l) => JSON.parse(l) as { path: string; code: number; reason: string; messages: number });
      assert.deepEqual(
        closes.map((c) => [c.path, c.code, c.reason, c.messages]).sort(),
        ['/ws-detected', '/ws-http'].flatMap((path) => [
          [path, 4001, 'client says bye', 0],
          [path, 4002, 'server says bye', 1002],
        ]),
      );
    });

    it('the ws pod\'s proxy counts each upgrade as a 101 from the client\'s identity, over mTLS', async function () {
      const m = await metrics(ns, await onePod(ns, 'ws'));
      const upgrades = total(m, 'tsmesh_requests_total', { direction: 'inbound', source_identity: spiffe(ns, 'client'), destination_identity: spiffe(ns, 'ws'), response_code: '101', tls: 'true' });
      const tunnels = total(m, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound', tls: 'true' });
      console.log(`      ${upgrades} upgrades counted as 101, ${tunnels} upgraded connections opened`);
      assert.equal(upgrades, 4, 'two WebSockets through each Service');
      assert.ok(tunnels >= 4, `${tunnels} upgraded connections counted`);
    });
  });

  describe('a StatefulSet behind a headless Service, each pod called by its own name and address under STRICT', function () {
    const ns = NS.sts;
    let client: string;
    let web: Pod[];
    before(async function () {
      await ready('sts');
      client = await onePod(ns, 'client');
      web = await readyPods(ns, 'web');
    });
    afterEach(diagnoseOnFailure(ns));
    after(() => cleanUp('sts'));

    it('web-0 and web-1 by their DNS names and by their pod IPs: each answers, and sees the client\'s SPIFFE ID', async function () {
      assert.deepEqual(web.map((p) => p.metadata.name), ['web-0', 'web-1']);
      const urls = [
        ...web.map((p) => `http://${p.metadata.name}.web.${ns}.svc.cluster.local:${HTTP_PORT}/by-name`),
        ...web.map((p) => `http://${p.status.podIP}:${HTTP_PORT}/by-ip`),
      ];
      const answers = await timed('StatefulSet calls', () => calls<HttpAnswer[]>(ns, client, ['http', '10000', ...urls]));
      for (const a of answers) console.log(`      ${a.url}: ${a.status ?? a.error} from ${typeof a.body === 'object' ? a.body.pod : '?'} in ${a.ms.toFixed(0)} ms`);
      assert.deepEqual(
        answers.map((a) => [a.status, typeof a.body === 'object' ? a.body.pod : a.body, typeof a.body === 'object' ? a.body.clientId : undefined]),
        ['web-0', 'web-1', 'web-0', 'web-1'].map((pod) => [200, pod, spiffe(ns, 'client')]),
      );
      // The peers of a StatefulSet call one another by name.
      const [peer] = await calls<HttpAnswer[]>(ns, 'web-0', ['http', '10000', `http://web-1.web.${ns}.svc.cluster.local:${HTTP_PORT}/peer`]);
      assert.equal(peer!.status, 200, JSON.stringify(peer));
      assert.deepEqual([typeof peer!.body === 'object' && peer!.body.pod, typeof peer!.body === 'object' && peer!.body.clientId], ['web-1', spiffe(ns, 'web')]);
    });

    it('each web pod\'s proxy counts the client\'s calls from its SPIFFE ID over mTLS, and refuses a caller without a sidecar (STRICT)', async function () {
      for (const p of web) {
        const n = total(await metrics(ns, p.metadata.name), 'tsmesh_requests_total', { direction: 'inbound', source_identity: spiffe(ns, 'client'), destination_identity: spiffe(ns, 'web'), response_code: '200', tls: 'true' });
        assert.equal(n, 2, `${p.metadata.name}: by name and by address`);
      }
      const plain = await onePod(ns, 'plain');
      const refused = await calls<HttpAnswer[]>(ns, plain, ['http', '10000', ...web.map((p) => `http://${p.status.podIP}:${HTTP_PORT}/plain`)]);
      console.log(`      a caller without a sidecar: ${refused.map((a) => `${a.status ?? a.error} ${a.meshError ?? ''}`).join(', ')}`);
      for (const a of refused) assert.deepEqual([a.status, a.meshError], [403, 'mtls-required'], JSON.stringify(a));
    });
  });

  describe('a replica that hangs does not wedge its callers', function () {
    const ns = NS.hang;
    let client: string;
    let hung: string;
    let well: string;
    const stats = async (pod: string): Promise<{ requests: number; held: number; hang: boolean }> =>
      JSON.parse(await inPod(ns, pod, ['node', '-e', "fetch('http://127.0.0.1:8081/stats').then((r) => r.text()).then((t) => process.stdout.write(t))"])) as never;
    before(async function () {
      await ready('hang');
      client = await onePod(ns, 'client');
    });
    afterEach(diagnoseOnFailure(ns));
    after(() => cleanUp('hang'));

    /** Closed-loop calls for 12 s, 4 at a time to `service` and 2 at a time to steady, each cut by the caller at `boundMs`. */
    const load = async (service: string, boundMs: number): Promise<[LoadResult, LoadResult]> => {
      const spec = {
        seconds: 12,
        boundMs,
        targets: [
          { url: `http://${service}.${ns}.svc.cluster.local/call`, concurrency: 4 },
          { url: `http://steady.${ns}.svc.cluster.local/call`, concurrency: 2 },
        ],
      };
      const [toSlow, toSteady] = await timed(`calls to ${service} beside a hung replica`, () => calls<LoadResult[]>(ns, client, ['load', JSON.stringify(spec)], 90_000));
      console.log(`      ${service}: ${JSON.stringify(toSlow)}`);
      console.log(`      steady meanwhile: ${JSON.stringify(toSteady)}`);
      // The other Service the same client calls is not held back at all.
      assert.deepEqual(toSteady!.errors, {}, 'a call to steady the client had to cut, or that failed');
      assert.deepEqual(toSteady!.statuses, { 200: toSteady!.sent }, 'every call to steady answered');
      assert.ok(toSteady!.sent >= 20, `only ${toSteady!.sent} calls to steady in 12 s`);
      return [toSlow!, toSteady!];
    };

    it('under a 2 s route timeout every call ends, 200 from the other replica or 504 from the mesh, and calls to another Service keep succeeding', async function () {
      const slow = await readyPods(ns, 'slow');
      assert.equal(slow.length, 2);
      hung = slow[0]!.metadata.name;
      well = slow[1]!.metadata.name;
      // Both replicas answer before one hangs.
      const before = await calls<HttpAnswer[]>(ns, client, ['http', '10000', ...slow.map((p) => `http://${p.status.podIP}:${HTTP_PORT}/before`)]);
      assert.deepEqual(before.map((a) => a.status), [200, 200], JSON.stringify(before));
      await inPod(ns, hung, ['node', '-e', "fetch('http://127.0.0.1:8081/hang', { method: 'POST' }).then((r) => process.exit(r.ok ? 0 : 1))"]);
      // No call may reach the caller's 15 s bound: the route timeout ends it first.
      const [toSlow] = await load('slow', 15_000);
      assert.deepEqual(toSlow.errors, {}, 'a call to slow the client had to cut, or that failed');
      assert.deepEqual(Object.keys(toSlow.statuses).sort(), ['200', '504'].filter((s) => toSlow.statuses[s]), 'only 200 and 504');
      assert.ok((toSlow.statuses['504'] ?? 0) >= 1, 'the hung replica was called, and the route timeout answered');
      assert.deepEqual(toSlow.meshErrors, { timeout: toSlow.statuses['504'] }, 'every 504 is the route timeout\'s');
      assert.ok(toSlow.ms['504']!.p50 >= 1900, `a 504 came after ${toSlow.ms['504']!.p50} ms, before the 2 s timeout`);
      assert.deepEqual(Object.keys(toSlow.pods), [well], 'every 200 came from the replica that answers');
      assert.ok((toSlow.statuses['200'] ?? 0) > 10 * (toSlow.statuses['504'] ?? 0), 'the balancer sends the hung replica a few calls, not half');
      // The balancer learns from the silence of the hung replica, not from the timeout: the callers are never all
      // held by it (they were, for the 2 s, while a hung replica's estimate faded as its requests waited).
      assert.ok(toSlow.longestGapMs < 1500, `no call to slow answered for ${toSlow.longestGapMs} ms`);
    });

    it('without a route timeout, the hung replica holds only the calls that reached it before its silence showed; the rest go to the other', async function () {
      // slow-bare: the same pods, no TrafficPolicy. The mesh waits as long as the caller; the caller waits 5 s.
      const [toSlow] = await load('slow-bare', 5000);
      const cut = toSlow.errors['aborted'] ?? 0;
      assert.deepEqual(Object.keys(toSlow.errors), cut > 0 ? ['aborted'] : [], 'calls failed otherwise than cut by the caller');
      assert.deepEqual(toSlow.statuses, { 200: toSlow.sent - cut }, 'the others answered 200');
      assert.deepEqual(Object.keys(toSlow.pods), [well], 'by the replica that answers');
      assert.ok(cut <= 6, `${cut} calls waited on the hung replica until their caller gave up`);
      // Held, the callers would all wait out their 5 s.
      assert.ok(toSlow.longestGapMs < 2500, `no call to slow-bare answered for ${toSlow.longestGapMs} ms: the callers were all held`);
    });

    it('the hung app holds none of the calls the mesh timed out or their callers gave up', async function () {
      const s = await waitFor(
        async () => {
          const x = await stats(hung);
          return x.held === 0 ? x : undefined;
        },
        10_000,
        `${hung} to hold no request`,
      );
      console.log(`      ${hung} still hangs (${s.hang}): ${s.requests} requests reached it, ${s.held} held`);
      assert.ok(s.hang && s.requests >= 3, 'the calls reached the hung app');
    });
  });

  teardownTest(Object.values(NS));
});
