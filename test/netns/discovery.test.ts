// The discovery stream end to end on the real kernel, with real processes:
// `tsmesh control-plane --mesh-file` in its own namespace, pods whose
// `tsmesh proxy` runs without --config-file (on GET /v1/config over mTLS),
// `tsmesh init` redirects, apps as uid 1000 (test/netns/stream-lab.ts).
//
// What the control plane's issue asks: a proxy that loses the control plane
// keeps serving traffic on its last config, and catches up after
// reconnecting. The control plane is killed by its PID (SIGKILL: no goodbye
// on the stream, as when its node dies); traffic from a to service b goes on
// with zero failures; the mesh file changes while it is down (b gains a
// second endpoint, b2); once the control plane is back, a's proxy reconnects
// on its own backoff, its /config shows the new version, and traffic reaches
// b2. A change made while connected reaches a's /config within 1 s, before
// the outage and after it. After a longer outage (40 s, long enough for the
// reconnect backoff to reach its cap), a change made while the control plane
// was down reaches every proxy within 5 s of its return.
//
// Addresses: 10.244.20.0/24 for the pods, ClusterIPs in 10.96.20.0/24, so
// this file and test/netns/mesh.test.ts (10.244.10.0/24) can run one after
// the other or side by side. Skipped, with the reason printed, where network
// namespaces cannot be created.
import assert from 'node:assert/strict';
import { STREAM_BACKOFF } from '../../proxy/config/stream.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { APP_HTTP_PORT, APP_USER, K8S_NAMESPACE, sleep } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { StreamLab, type MeshDocument } from './stream-lab.js';

const SERVICE_IP = '10.96.20.10';
/** Within this, a change made while connected must show in a's /config. */
const PUSH_LIMIT_MS = 1000;
/** The long outage: the reconnect delays have long reached their cap. */
const LONG_OUTAGE_MS = 40_000;
/** Within this of the control plane's return, a change made while it was down must show in every proxy's /config. */
const CONVERGE_LIMIT_MS = 5000;
/** The ceiling of reconnect delay `n`: each delay is drawn in [ceiling/2, ceiling] (lib/backoff.ts). */
const delayCeiling = (n: number): number => Math.min(STREAM_BACKOFF.maxMs, STREAM_BACKOFF.minMs * STREAM_BACKOFF.factor ** n);

/** Service b on its ClusterIP, HTTP 80 -> 8080, with these pods as endpoints. */
function meshWith(lab: StreamLab, endpoints: readonly string[], timeout?: string): MeshDocument {
  return {
    services: [
      {
        name: 'b',
        namespace: K8S_NAMESPACE,
        clusterIPs: [SERVICE_IP],
        ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: APP_HTTP_PORT }],
        endpoints: endpoints.map((p) => lab.endpoint(p)),
      },
    ],
    trafficPolicies: timeout ? [{ name: `b-timeout-${timeout}`, namespace: K8S_NAMESPACE, targetRef: { kind: 'Service', name: 'b' }, spec: { timeout } }] : [],
  };
}

const serviceB = (c: ProxyConfig) => c.services.find((s) => s.name === 'b' && s.namespace === K8S_NAMESPACE);
const endpointsOfB = (c: ProxyConfig): string[] => (serviceB(c)?.endpoints ?? []).map((e) => e.address).sort();

interface ProxyLogLine {
  time: string;
  msg: string;
  inMs?: number;
  why?: string;
}

/** A proxy's structured log lines (stderr) with this message, logged at or after `since`. */
function logLines(stderr: string, msg: string, since: number): ProxyLogLine[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as ProxyLogLine)
    .filter((l) => Date.parse(l.time) >= since);
}

describe('the discovery stream with real processes: a proxy outlives its control plane and catches up (real kernel)', function () {
  this.timeout(180_000);
  let lab: StreamLab | undefined;

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await StreamLab.create({
      tag: 'd',
      subnet: '10.244.20',
      serviceCidr: '10.96.20.0/24',
      pods: [
        { name: 'a', host: 11, serviceAccount: 'a' },
        { name: 'b', host: 12, serviceAccount: 'b', app: true },
        // A second replica of b: meshed and running from the start, but no endpoint of service b until the mesh file says so.
        { name: 'b2', host: 13, serviceAccount: 'b', app: true },
      ],
      mesh: { services: [] },
    });
    await lab.writeMesh(meshWith(lab, ['b']));
    await lab.waitConfig('a', 'service b', (c) => serviceB(c) !== undefined);
    console.log(`      the mesh is up in ${lab.setupMs} ms (control plane, 3 pods, proxies on the stream)`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it("carries a (uid 1000) -> service b's ClusterIP on the config streamed by the control plane", async function () {
    const config = (await lab!.config('a'))!;
    assert.deepEqual(endpointsOfB(config), [lab!.addr.b]);
    assert.equal(serviceB(config)!.endpoints[0]!.identity, lab!.identity('b'));
    const r = await lab!.curl('a', [`http://${SERVICE_IP}/hello?from=a`], APP_USER);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal((JSON.parse(r.body) as { app: string }).app, 'b');
    assert.equal(lab!.appRequests('b', '/hello').length, 1);
    assert.equal(await lab!.clusterIpLeaks('a'), 0);
  });

  it(`pushes a change of the mesh file made while connected to a's /config within ${PUSH_LIMIT_MS} ms`, async function () {
    // Three changes in a row; each must show in a's /config (polled every 25
    // ms through curl) within the limit: the control plane polls the file
    // every 250 ms, then streams one line.
    const took: number[] = [];
    for (const timeout of ['5s', '6s', '7s']) {
      const before = (await lab!.config('a'))!.version;
      await lab!.writeMesh(meshWith(lab!, ['b'], timeout));
      const { config, ms } = await lab!.waitConfig('a', `the policy b-timeout-${timeout}`, (c) => serviceB(c)?.trafficPolicy?.timeout === timeout, 5000, 25);
      assert.notEqual(config.version, before);
      took.push(ms);
    }
    console.log(`      file written -> a's /config: ${took.join(', ')} ms`);
    for (const ms of took) assert.ok(ms < PUSH_LIMIT_MS, `a change took ${ms} ms to reach a's proxy`);
  });

  it('keeps serving on the last config while the control plane is down, then reconnects and catches up', async function () {
    const proxyA = lab!.proxies.a!;
    const last = (await lab!.config('a'))!;
    // A steady 40 requests a second from a's app for 9 s; the control plane is killed 1 s in.
    const load = lab!.startLoad('a', {
      origin: `http://${SERVICE_IP}`,
      path: '/outage?i={i}',
      mode: 'rate',
      ratePerSecond: 40,
      durationMs: 9000,
      maxRequests: 360,
      timeoutMs: 5000,
      timeline: true,
    });
    await load.line((l) => l.startsWith('{"started":'), 30_000);
    await sleep(1000);
    const killedAt = Date.now();
    await lab!.killControlPlane();

    // While it is down: b gains a second endpoint in the mesh file.
    await sleep(1500);
    await lab!.writeMesh(meshWith(lab!, ['b', 'b2'], serviceB(last)?.trafficPolicy?.timeout));
    await sleep(1000);
    const during = (await lab!.config('a'))!;
    assert.equal(during.version, last.version, "a's proxy dropped or changed its config while the control plane was down");
    assert.deepEqual(endpointsOfB(during), [lab!.addr.b]);

    const summary = await lab!.loadSummary(load, 60_000);
    const afterKill = (summary.timeline ?? []).filter((q) => q.start >= killedAt);
    const downFor = summary.endedAt - killedAt;
    console.log(`      ${summary.sent} requests, ${summary.failed} failed; ${afterKill.length} of them sent in the ${downFor} ms after the kill`);
    assert.equal(summary.failed, 0, JSON.stringify(summary.failures.slice(0, 5)));
    assert.ok(downFor >= 6000, `the load ended ${downFor} ms after the kill`);
    assert.ok(afterKill.length >= 200, `only ${afterKill.length} requests were sent while the control plane was down`);
    assert.ok(afterKill.every((q) => q.status === 200));
    assert.equal(lab!.appRequests('b', '/outage').length, summary.sent);
    assert.equal(lab!.appRequests('b2', '/outage').length, 0, 'b2 got traffic before a could know of it');
    assert.ok(lab!.controlPlane!.running === false);

    // The control plane comes back (same CA, same mesh file): a's proxy reconnects on its own.
    const restartAt = Date.now();
    await lab!.startControlPlane();
    const readyAt = Date.now();
    const { config: caughtUp } = await lab!.waitConfig('a', 'endpoint b2 of service b', (c) => endpointsOfB(c).includes(lab!.addr.b2!), 60_000, 100);
    const caughtUpAt = Date.now();
    const reconnects = logLines(proxyA.stderr, 'discovery stream connected', killedAt);
    assert.equal(reconnects.length, 1, `a's proxy connected ${reconnects.length} times after the kill`);
    const connectedAt = Date.parse(reconnects[0]!.time);
    const attempts = logLines(proxyA.stderr, 'discovery stream down; reconnecting', killedAt).filter((l) => Date.parse(l.time) <= connectedAt);
    const delays = attempts.map((l) => l.inMs ?? 0);
    const lastAttempt = attempts.at(-1)!;
    const dueAt = Date.parse(lastAttempt.time) + lastAttempt.inMs!;
    console.log(
      `      down ${restartAt - killedAt} ms; ${delays.length} reconnect delays ${delays.join(', ')} ms; ` +
        `control plane ready ${readyAt - restartAt} ms after the restart; a reconnected ${connectedAt - readyAt} ms and showed b2 ${caughtUpAt - readyAt} ms after that; ` +
        `version ${last.version} -> ${caughtUp.version}`,
    );
    assert.notEqual(caughtUp.version, last.version);
    assert.deepEqual(endpointsOfB(caughtUp), [lab!.addr.b, lab!.addr.b2].sort());
    assert.equal(serviceB(caughtUp)!.endpoints.find((e) => e.address === lab!.addr.b2)!.identity, lab!.identity('b2'));
    // Backoff: each delay is drawn in [ceiling/2, ceiling], the ceiling doubling from 200 ms to its cap.
    assert.ok(delays.length >= 4, `a's proxy tried to reconnect ${delays.length} times:\n${proxyA.tail()}`);
    delays.forEach((d, n) => assert.ok(d >= delayCeiling(n) / 2 - 1 && d <= delayCeiling(n) + 1, `delay ${n} was ${d} ms`));
    // It connected on the attempt its backoff had scheduled, the first one due after the control plane was ready.
    assert.ok(connectedAt - dueAt < 2000, `connected ${connectedAt - dueAt} ms after the attempt was due`);
    assert.ok(dueAt >= readyAt - 1000, `an attempt due ${readyAt - dueAt} ms before the control plane was ready connected`);

    // Traffic reaches the new endpoint. The balancer keeps an endpoint's slowest recent sample until
    // it has been idle for its reprobe time (1 s), and the counted load of 200 requests lasts a
    // fraction of a second: one slow first sample on b2 could send all of it to b. So a few requests
    // go first, and the counted load starts once b2 is due a fresh sample, whatever its first were.
    await lab!.load('a', { origin: `http://${SERVICE_IP}`, path: '/warm?i={i}', mode: 'closed', concurrency: 4, durationMs: 5000, maxRequests: 20, timeoutMs: 5000 });
    await sleep(1500);
    const after = await lab!.load('a', { origin: `http://${SERVICE_IP}`, path: '/after?i={i}', mode: 'closed', concurrency: 4, durationMs: 20_000, maxRequests: 200, timeoutMs: 5000 });
    const toB = lab!.appRequests('b', '/after').length;
    const toB2 = lab!.appRequests('b2', '/after').length;
    console.log(`      after the catch-up: ${after.sent} requests, ${after.failed} failed; b ${toB}, b2 ${toB2}`);
    assert.equal(after.failed, 0, JSON.stringify(after.failures.slice(0, 5)));
    assert.equal(toB + toB2, 200);
    assert.ok(toB2 >= 20, `b2 got ${toB2} of 200 requests`);
    assert.equal(await lab!.clusterIpLeaks('a'), 0);
  });

  it(`after reconnecting, a change made while connected again reaches a's /config within ${PUSH_LIMIT_MS} ms`, async function () {
    // b leaves the service; b2 stays.
    const timeout = serviceB((await lab!.config('a'))!)?.trafficPolicy?.timeout;
    await lab!.writeMesh(meshWith(lab!, ['b2'], timeout));
    const { ms } = await lab!.waitConfig('a', 'b2 as the only endpoint of b', (c) => endpointsOfB(c).join() === lab!.addr.b2, 5000, 25);
    console.log(`      file written -> a's /config: ${ms} ms`);
    assert.ok(ms < PUSH_LIMIT_MS, `the change took ${ms} ms to reach a's proxy`);
    const summary = await lab!.load('a', { origin: `http://${SERVICE_IP}`, path: '/only-b2?i={i}', mode: 'closed', concurrency: 4, durationMs: 20_000, maxRequests: 100, timeoutMs: 5000 });
    assert.equal(summary.failed, 0, JSON.stringify(summary.failures.slice(0, 5)));
    assert.equal(lab!.appRequests('b2', '/only-b2').length, 100);
    assert.equal(lab!.appRequests('b', '/only-b2').length, 0);
  });

  it(`after a ${LONG_OUTAGE_MS / 1000} s outage, a change made while the control plane was down reaches every proxy within ${CONVERGE_LIMIT_MS} ms of its return`, async function () {
    this.timeout(LONG_OUTAGE_MS + 120_000);
    const pods = ['a', 'b', 'b2'];
    const timeout = '9s';
    const killedAt = Date.now();
    await lab!.killControlPlane();
    await sleep(LONG_OUTAGE_MS - 5000);
    await lab!.writeMesh(meshWith(lab!, ['b2'], timeout));
    await sleep(5000);
    await lab!.startControlPlane();
    const readyAt = Date.now();
    const caughtUp = await Promise.all(
      pods.map(async (pod) => {
        await lab!.waitConfig(pod, `the policy b-timeout-${timeout}`, (c) => serviceB(c)?.trafficPolicy?.timeout === timeout, 60_000, 50);
        return Date.now() - readyAt;
      }),
    );
    const longest = pods.map((pod) => Math.max(...logLines(lab!.proxies[pod]!.stderr, 'discovery stream down; reconnecting', killedAt).map((l) => l.inMs ?? 0)));
    console.log(
      `      down ${readyAt - killedAt} ms; the change reached ${pods.map((p, i) => `${p} ${caughtUp[i]} ms`).join(', ')} after the control plane was ready; ` +
        `longest reconnect delay ${pods.map((p, i) => `${p} ${longest[i]} ms`).join(', ')}`,
    );
    pods.forEach((pod, i) => assert.ok(caughtUp[i]! <= CONVERGE_LIMIT_MS, `the change reached ${pod}'s proxy ${caughtUp[i]} ms after the control plane was ready`));
    pods.forEach((pod, i) => assert.ok(longest[i]! <= STREAM_BACKOFF.maxMs, `${pod}'s proxy waited ${longest[i]} ms between attempts`));
  });
});
