// WebSocket, HTTP/1.1 Upgrade and interim (1xx) responses between two meshed
// pods on the real kernel (test/netns/mesh-lab.ts): the `ws` package's client
// as uid 1000 in pod a calls service b's ClusterIP; a's proxy carries the
// upgrade over mTLS to b's proxy, in front of test/netns/ws-app.ts (the `ws`
// package's server, and a raw node:net app for 103, 100 Continue and a 101
// nobody asked for). Service b's port 90 is detected (auto), 91 declared http
// (both to the WebSocket app on 8090), 92 detected (the raw app on 8092).
// curl sends Expect: 100-continue. Skipped, with the reason printed, where
// network namespaces cannot be created.
import assert from 'node:assert/strict';
import { find, parseMetrics, type Sample } from '../../lib/prom-text.js';
import { APP_USER, IDENTITY, K8S_NAMESPACE, MeshLab, SERVICE_B, SERVICE_IP, type Managed } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { WS_ECHO_RESULT } from './ws-echo.js';

const WS_PORT = 8090;
const RAW_PORT = 8092;
const sum = (samples: Sample[]): number => samples.reduce((n, s) => n + s.value, 0);

describe('WebSocket, Upgrade and 1xx between meshed pods in network namespaces (real kernel)', function () {
  this.timeout(120_000);
  let lab: MeshLab | undefined;
  let app: Managed | undefined;

  /** A's config: service b as mesh-lab.ts has it, plus the ports of ws-app.ts. */
  const aConfig = (): object => {
    const config = lab!.aConfig() as { services: { ports: object[] }[] };
    config.services[0]!.ports.push(
      { port: 90, name: 'ws', protocol: 'auto', targetPort: WS_PORT },
      { port: 91, name: 'http-ws', protocol: 'http', targetPort: WS_PORT },
      { port: 92, name: 'raw', protocol: 'auto', targetPort: RAW_PORT },
    );
    return config;
  };

  /** Runs ws-client.ts in pod a as uid 1000; its JSON line. */
  async function wsClient(mode: string, url: string, arg?: string, pod: 'a' | 'b' = 'a'): Promise<Record<string, unknown>> {
    const r = await lab!.exec(pod, [process.execPath, '--import', 'tsx', 'test/netns/ws-client.ts', mode, url, ...(arg === undefined ? [] : [arg])], APP_USER, { timeoutMs: 90_000 });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    assert.ok(line.startsWith('{'), `ws-client ${mode} ${url}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    return JSON.parse(line) as Record<string, unknown>;
  }

  /** What ws-app.ts logged of `event`. */
  const appLog = (event: string): Record<string, unknown>[] =>
    (app?.stdout ?? '')
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await MeshLab.create();
    app = lab.spawnIn('ws-app', 'b', [process.execPath, '--import', 'tsx', 'test/netns/ws-app.ts', String(WS_PORT), String(RAW_PORT)], APP_USER);
    await app.line((l) => l.includes('"ready":true'), 30_000);
    await lab.applyConfig('a', aConfig());
    console.log(`      the mesh is up in ${lab.setupMs} ms`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  for (const [kind, port] of [
    ['with protocol detection (auto)', 90],
    ['declared http', 91],
  ] as const) {
    it(`carries a WebSocket on a port ${kind}: 1,000 echoed messages, a binary frame, ping/pong, close codes both ways`, async function () {
      const opened = appLog('ws-open').length;
      const r = await wsClient('echo', `ws://${SERVICE_IP}:${port}/chat-${port}`);
      assert.deepEqual(r, WS_ECHO_RESULT);
      const opens = appLog('ws-open').slice(opened);
      assert.equal(opens.length, 2);
      // The app saw b's proxy over loopback, not a.
      assert.deepEqual(
        opens.map((o) => [o.path, o.peer]),
        [
          [`/chat-${port}`, '127.0.0.1'],
          [`/chat-${port}`, '127.0.0.1'],
        ],
      );
      // 1,000 texts, the binary frame and "close-me"; then the client's own close code, seen by the app.
      const closes = appLog('ws-close').filter((c) => c.path === `/chat-${port}`);
      assert.deepEqual(
        closes.map((c) => [c.code, c.reason, c.messages]).sort(),
        [
          [4001, 'client says bye', 0],
          [4002, 'server says bye', 1002],
        ],
      );
    });
  }

  it('counts each upgrade request in both proxies\' metrics, as a 101 over mTLS between the two identities', async function () {
    const a = parseMetrics(await lab!.admin('a', '/metrics'));
    const outbound = find(a, 'tsmesh_requests_total', { direction: 'outbound', source_identity: IDENTITY.a, destination_identity: IDENTITY.b, destination_service: SERVICE_B, response_code: '101', tls: 'true' });
    assert.equal(sum(outbound), 4, JSON.stringify(find(a, 'tsmesh_requests_total', {})));
    const b = parseMetrics(await lab!.admin('b', '/metrics'));
    const inbound = find(b, 'tsmesh_requests_total', { direction: 'inbound', source_identity: IDENTITY.a, destination_identity: IDENTITY.b, response_code: '101', tls: 'true' });
    assert.equal(sum(inbound), 4, JSON.stringify(find(b, 'tsmesh_requests_total', {})));
  });

  it('answers a WebSocket call an AuthorizationPolicy denies 403 before upgrading: the app never sees it', async function () {
    const bConfig = lab!.bConfig() as { inbound: object };
    const opened = appLog('ws-open').length;
    await lab!.applyConfig('b', { ...bConfig, inbound: { ...bConfig.inbound, authorization: [{ name: 'only-admin', rules: [{ serviceAccounts: [`${K8S_NAMESPACE}/admin`], ports: [WS_PORT] }] }] } });
    try {
      assert.deepEqual(await wsClient('denied', `ws://${SERVICE_IP}:90/denied`), { status: 403, error: 'denied' });
      assert.deepEqual(await wsClient('denied', `ws://${SERVICE_IP}:91/denied`), { status: 403, error: 'denied' });
      assert.equal(appLog('ws-open').length, opened);
      const b = parseMetrics(await lab!.admin('b', '/metrics'));
      assert.equal(sum(find(b, 'tsmesh_authz_denials_total', { source_identity: IDENTITY.a, port: String(WS_PORT), protocol: 'http' })), 2);
    } finally {
      await lab!.applyConfig('b', bConfig);
    }
    assert.equal((await wsClient('hold', `ws://${SERVICE_IP}:90/allowed-again`, '100')).echoed, 'still there');
  });

  it('forwards 103 Early Hints from a raw app through both proxies before the final answer (curl)', async function () {
    const r = await lab!.curl('a', ['-i', `http://${SERVICE_IP}:92/hints`], APP_USER);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.match(r.body, /^HTTP\/1.1 103 Early Hints\r\nlink: <\/style.css>; rel=preload; as=style\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*\r\n\r\npage$/);
  });

  it('gives curl\'s Expect: 100-continue the app\'s 100 Continue, once, through both proxies, before the body is sent', async function () {
    const t0 = Date.now();
    // curl would wait 5 s for the 100; the proxies' own wait for the app's is 1 s.
    const r = await lab!.curl('a', ['-i', '-H', 'expect: 100-continue', '--expect100-timeout', '5', '--data-binary', 'hello, app', `http://${SERVICE_IP}:92/continue`], APP_USER);
    const ms = Date.now() - t0;
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal(r.body.match(/HTTP\/1.1 100 Continue\r\n/g)?.length, 1, r.body);
    assert.match(r.body, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK\r\n[\s\S]*got 10$/);
    const seen = appLog('raw').filter((e) => e.path === '/continue');
    assert.deepEqual(seen.map((e) => [e.expect, e.bodyBeforeContinue]), [[true, 0]], 'the expectation reached the app, and the body waited for its 100');
    assert.ok(ms < 900, `answered in ${ms} ms: the app's 100 came through, not a proxy's after its wait`);
  });

  it('answers 502 when the app switches protocols unasked (101 to a plain request): the bytes after it are not read as the response', async function () {
    const r = await lab!.curl('a', [`http://${SERVICE_IP}:92/unasked-101`], APP_USER);
    assert.equal(r.status, 502, `${r.error} ${r.body}`);
    assert.match(r.body, /101 Switching Protocols to a request that asked for no upgrade/);
    assert.doesNotMatch(r.body, /forged/);
  });

  it('prints WebSocket figures through the pair and direct (open, round trip, bulk echo, GETs meanwhile and beside stalled WebSockets)', async function () {
    const through = await wsClient('bench', `ws://${SERVICE_IP}:90/bench`, '20');
    const direct = await wsClient('bench', `ws://127.0.0.1:${WS_PORT}/bench`, '20', 'b');
    console.log(`      through the pair: ${JSON.stringify(through)}`);
    console.log(`      direct (in pod b): ${JSON.stringify(direct)}`);
    assert.ok(typeof through.bulkMiBps === 'number' && typeof direct.bulkMiBps === 'number');
    // Plain requests beside 200 WebSockets whose reader stopped, each with 1 MiB to deliver.
    console.log(`      GETs beside 200 stalled WebSockets: ${JSON.stringify(await wsClient('stall', `ws://${SERVICE_IP}:90/stalled`, '200'))}`);
  });
});
