// Traffic management end to end on the real kernel: the scenarios of
// proxy/policy.test.ts (loopback), here with every part the real program.
// `tsmesh control-plane --mesh-file` streams the policies the test writes into
// the mesh file (trafficPolicies, authorizationPolicies, mesh settings) to
// proxies that run without --config-file; every endpoint is a meshed pod in a
// namespace of its own, with `tsmesh init` redirects, its own sidecar and
// ServiceAccount identity, and test/netns/mesh-app.ts as its app; the client
// is test/netns/mesh-client.ts `load` as uid 1000 in pod "web", whose
// connections to ClusterIPs take the redirect to web's proxy
// (test/netns/stream-lab.ts).
//
//   web     10.244.30.11  sa web          the client (and the caller the authorization policy lists)
//   other   10.244.30.12  sa other        a second client, not listed
//   b1..b3  10.244.30.21-23  sa api       three replicas
//   canary  10.244.30.24  sa api-canary
//
// Each test points a service of its own (its own ClusterIP in 10.96.30.0/24)
// at these pods and sets only its own policy, so nothing one test leaves in
// the proxies' traffic state (latency estimates, ejections, retry budgets,
// all kept per service) touches another. The apps fail on demand: a query
// parameter (?failPercent=) or a line on the app's stdin (see mesh-app.ts).
// Request counts are those of the issue; each run is bounded in time.
// Skipped, with the reason printed, where network namespaces cannot be
// created.
import assert from 'node:assert/strict';
import type { LoadOptions, LoadSummary, RequestRecord } from './mesh-client.js';
import { APP_HTTP_PORT, APP_USER, K8S_NAMESPACE, sleep, waitFor } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { total } from '../../lib/prom-text.js';
import { StreamLab, type MeshDocument } from './stream-lab.js';

const NS = K8S_NAMESPACE;

/** Each service: its ClusterIP and its endpoints (pods). */
const SERVICES: Record<string, { ip: string; pods: string[] }> = {
  api: { ip: '10.96.30.10', pods: ['b1'] },
  'api-canary': { ip: '10.96.30.11', pods: ['canary'] },
  flaky: { ip: '10.96.30.12', pods: ['b2'] },
  down: { ip: '10.96.30.13', pods: ['b3'] },
  pool: { ip: '10.96.30.14', pods: ['b1', 'b2', 'b3'] },
  faulty: { ip: '10.96.30.15', pods: ['b1'] },
  delayed: { ip: '10.96.30.16', pods: ['b1'] },
  secure: { ip: '10.96.30.17', pods: ['canary'] },
  failing: { ip: '10.96.30.18', pods: ['b3'] },
};

const origin = (service: string): string => `http://${SERVICES[service]!.ip}`;

const describeFailures = (s: LoadSummary): string => `${JSON.stringify(s.statuses)} ${JSON.stringify(s.failures.slice(0, 5))}`;
const seconds = (s: LoadSummary): string => ((s.endedAt - s.startedAt) / 1000).toFixed(1);
const rate = (s: LoadSummary): number => Math.round(s.sent / ((s.endedAt - s.startedAt) / 1000));

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

describe('traffic policy through the control plane, between meshed pods in network namespaces (real kernel)', function () {
  this.timeout(240_000);
  let lab: StreamLab | undefined;

  /** The whole mesh: every service, plus the policies (and mesh settings) of the test running. */
  function meshDocument(policies: Omit<MeshDocument, 'services'>): MeshDocument {
    return {
      ...policies,
      services: Object.entries(SERVICES).map(([name, s]) => ({
        name,
        namespace: NS,
        clusterIPs: [s.ip],
        ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: APP_HTTP_PORT }],
        endpoints: s.pods.map((p) => lab!.endpoint(p)),
      })),
    };
  }

  /**
   * Writes the mesh file with these policies and waits until web's proxy runs
   * them (and `inboundOf`'s proxy, for authorization policies): the policy
   * reaches the proxies only through the control plane's stream.
   */
  async function applyPolicies(policies: Omit<MeshDocument, 'services'>, inboundOf?: string): Promise<void> {
    await lab!.writeMesh(meshDocument(policies));
    const wanted = policies.trafficPolicies ?? [];
    const budget = (policies.mesh?.retryBudget as { minRetriesPerSecond?: number } | undefined)?.minRetriesPerSecond ?? 10;
    await lab!.waitConfig('web', `traffic policies ${wanted.map((p) => p.name).join(', ') || '(none)'}`, (c) => {
      const have = c.services.filter((s) => s.trafficPolicy).map((s) => `${s.name}:${s.trafficPolicy!.name}`).sort();
      const want = wanted.map((p) => `${(p.targetRef as { name: string }).name}:${p.name as string}`).sort();
      return have.join() === want.join() && c.mesh.retryBudget.minRetriesPerSecond === budget;
    });
    if (inboundOf) {
      const names = (policies.authorizationPolicies ?? []).map((p) => p.name as string).sort().join();
      await lab!.waitConfig(inboundOf, `authorization policies ${names}`, (c) => (c.inbound.authorization ?? []).map((a) => a.name).sort().join() === names);
    }
  }

  const trafficPolicy = (name: string, service: string, spec: object) => ({ name, namespace: NS, targetRef: { kind: 'Service', name: service }, spec });

  async function webMetric(name: string, labels: Record<string, string>): Promise<number> {
    return total(await lab!.metrics('web'), name, labels);
  }

  function load(service: string, opts: Partial<LoadOptions> & { path: string; maxRequests: number }, pod = 'web'): Promise<LoadSummary> {
    return lab!.load(pod, { origin: origin(service), mode: 'closed', concurrency: 16, durationMs: 120_000, timeoutMs: 10_000, ...opts });
  }

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await StreamLab.create({
      tag: 'p',
      subnet: '10.244.30',
      serviceCidr: '10.96.30.0/24',
      pods: [
        { name: 'web', host: 11, serviceAccount: 'web' },
        { name: 'other', host: 12, serviceAccount: 'other' },
        { name: 'b1', host: 21, serviceAccount: 'api', app: true },
        { name: 'b2', host: 22, serviceAccount: 'api', app: true },
        { name: 'b3', host: 23, serviceAccount: 'api', app: true },
        { name: 'canary', host: 24, serviceAccount: 'api-canary', app: true },
      ],
      mesh: { services: [] },
    });
    await applyPolicies({});
    console.log(`      the mesh is up in ${lab.setupMs} ms (control plane, 6 pods, proxies on the stream)`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it('sends 10% +- 2% of 5,000 requests to a 10% canary', async function () {
    await applyPolicies({
      trafficPolicies: [trafficPolicy('api-canary-10', 'api', { routes: [{ name: 'split', backends: [{ service: 'api', weight: 90 }, { service: 'api-canary', weight: 10 }] }] })],
    });
    const s = await load('api', { path: '/split?i={i}', maxRequests: 5000 });
    const canary = lab!.appRequests('canary', '/split').length;
    const stable = lab!.appRequests('b1', '/split').length;
    console.log(`      ${s.sent} requests in ${seconds(s)} s (${rate(s)}/s): canary ${canary} (${((canary / s.sent) * 100).toFixed(2)}%), b1 ${stable}`);
    assert.equal(s.sent, 5000);
    assert.equal(s.failed, 0, describeFailures(s));
    assert.equal(canary + stable, 5000);
    assert.ok(canary >= 400 && canary <= 600, `the canary got ${canary} of 5000`);
    assert.equal(await lab!.clusterIpLeaks('web'), 0);
  });

  it('masks a backend failing 30% of requests with retries: >= 99.5% success seen by the client', async function () {
    // b2 answers 503 to 30% of the tries it gets, at random. A request fails
    // only if all its tries do: 0.3^6 = 0.07% with 6 attempts. It takes
    // 0.3 + 0.09 + ... = 0.43 retries per request on average, more than the
    // mesh's default budget allows (20% of requests + 10/s): that default is
    // what makes retry storms impossible, so a service that wants its
    // failures masked says so with a larger budget in its policy (ratio 0.5,
    // as in proxy/policy.test.ts).
    await applyPolicies({
      trafficPolicies: [
        trafficPolicy('flaky-retries', 'flaky', {
          retries: { attempts: 6, retryOn: ['5xx'], backoff: { base: '1ms', max: '5ms' }, budget: { ratio: 0.5, minRetriesPerSecond: 10, ttl: '10s' } },
        }),
      ],
    });
    const s = await load('flaky', { path: '/flaky?failPercent=30&i={i}', maxRequests: 2000, concurrency: 8 });
    const tries = lab!.appRequests('b2', '/flaky');
    const failedTries = tries.filter((t) => t.status === 503).length;
    const ok = s.statuses['200'] ?? 0;
    const retried = await webMetric('tsmesh_retries_total', { destination_service: `flaky.${NS}` });
    const exhausted = await webMetric('tsmesh_retry_budget_exhausted_total', { destination_service: `flaky.${NS}` });
    console.log(
      `      ${s.sent} requests in ${seconds(s)} s: ${ok} succeeded (${((ok / s.sent) * 100).toFixed(2)}%); b2 saw ${tries.length} tries, ` +
        `${failedTries} failed (${((failedTries / tries.length) * 100).toFixed(1)}%); ${retried} retries, budget exhausted ${exhausted} times`,
    );
    assert.equal(s.sent, 2000);
    assert.ok(ok / s.sent >= 0.995, `only ${ok} of ${s.sent} succeeded: ${describeFailures(s)}`);
    assert.ok(failedTries / tries.length > 0.25 && failedTries / tries.length < 0.35, `b2 failed ${failedTries} of ${tries.length} tries`);
    assert.equal(retried, tries.length - s.sent, 'every try beyond the first of each request is a counted retry');
  });

  it('holds the retry budget: with a backend failing every request and 3 retries asked for, it gets at most 1.25x the requests', async function () {
    // The mesh's budget (the policy sets none): retries <= 20% of requests
    // over a sliding 10 s, plus the floor of minRetriesPerSecond. With the
    // default floor of 10/s, 10 retries a second are free whatever the rate:
    // the backend's share would be 1.2x + 10/s / (request rate), over 1.25x
    // below 200 requests a second, and this lab's rate depends on the
    // machine. A floor of 1/s keeps the test about the ratio: 5,000 requests
    // at any rate over 20/s give at most 1.2x + 0.05x.
    await applyPolicies({
      mesh: { retryBudget: { ratio: 0.2, minRetriesPerSecond: 1, ttl: '10s' } },
      trafficPolicies: [trafficPolicy('down-retries', 'down', { retries: { attempts: 4, retryOn: ['5xx'], backoff: { base: '1ms', max: '2ms' } } })],
    });
    const s = await load('down', { path: '/down?failPercent=100&i={i}', maxRequests: 5000 });
    const tries = lab!.appRequests('b3', '/down').length;
    const exhausted = await webMetric('tsmesh_retry_budget_exhausted_total', { destination_service: `down.${NS}` });
    const retried = await webMetric('tsmesh_retries_total', { destination_service: `down.${NS}` });
    const elapsed = (s.endedAt - s.startedAt) / 1000;
    console.log(
      `      ${s.sent} requests in ${elapsed.toFixed(1)} s (${rate(s)}/s): b3 got ${tries} (${(tries / s.sent).toFixed(3)}x); ${retried} retries, ` +
        `budget exhausted ${exhausted} times; without the budget it would have been ${4 * s.sent}`,
    );
    assert.equal(s.sent, 5000);
    assert.deepEqual(s.statuses, { 503: 5000 }, 'every request ends with the backend\'s own 503');
    assert.ok(tries <= 1.25 * s.sent, `b3 got ${tries} requests for ${s.sent}`);
    assert.ok(tries <= 1.2 * s.sent + 2 * Math.ceil(elapsed) + 20, `b3 got ${tries}: more than 20% + 1/s over ${elapsed} s`);
    assert.ok(tries >= 1.15 * s.sent, `retries should use the budget: ${tries}`);
    assert.equal(retried, tries - s.sent);
    assert.ok(exhausted > 3000, `budget exhausted only ${exhausted} times`);
  });

  it('spreads the retry budget: under total failure no second brings the backend more than 1.3x its requests (the mesh default budget)', async function () {
    // 300 requests a second for 12 s, every try answered 503, 3 attempts
    // asked for, the mesh's default budget (20% of requests, 10/s floor,
    // 10 s ttl): 1.2x + 10/300 a second at steady state. A floor that was a
    // reserve of 10/s x 10 s was spent in the first second (1.5x), and again
    // whenever the window passed the retries that spent it.
    await applyPolicies({ trafficPolicies: [trafficPolicy('failing-retries', 'failing', { retries: { attempts: 3, retryOn: ['5xx'] } })] });
    const s = await load('failing', { path: '/failing?failPercent=100&i={i}', mode: 'rate', ratePerSecond: 300, durationMs: 12_000, maxRequests: 3600 });
    // A request's first try reaches the app before its retries; each request has its own i.
    const firsts: number[] = [];
    const retries: number[] = [];
    const seen = new Set<string>();
    for (const t of lab!.appRequests('b3', '/failing')) {
      const i = new URL(t.path, 'http://b3').searchParams.get('i')!;
      (seen.has(i) ? retries : firsts).push(t.at);
      seen.add(i);
    }
    const within = (xs: number[], from: number): number => xs.filter((x) => x >= from && x < from + 1000).length;
    let worst = { ratio: 0, at: 0, requests: 0 };
    for (let from = firsts[0]!; from + 1000 <= firsts.at(-1)!; from += 50) {
      const requests = within(firsts, from);
      const ratio = (requests + within(retries, from)) / requests;
      if (ratio > worst.ratio) worst = { ratio, at: from - firsts[0]!, requests };
    }
    console.log(
      `      ${s.sent} requests in ${seconds(s)} s (${rate(s)}/s): b3 got ${firsts.length + retries.length} (${((firsts.length + retries.length) / firsts.length).toFixed(3)}x); ` +
        `the worst second ${worst.ratio.toFixed(3)}x (${worst.requests} requests, from ${worst.at} ms)`,
    );
    assert.equal(s.sent, 3600);
    assert.deepEqual(s.statuses, { 503: 3600 }, "every request ends with the backend's own 503");
    assert.equal(firsts.length, s.sent);
    assert.ok(worst.ratio <= 1.3, `${worst.ratio}x the requests in the second from ${worst.at} ms`);
    assert.ok(retries.length >= 0.19 * s.sent, `retries should use the budget: ${retries.length}`);
  });

  it('ejects an endpoint returning 500s, moves its traffic to the healthy ones, and restores it once it recovers', async function () {
    const EJECTION_MS = 4000;
    await applyPolicies({ trafficPolicies: [trafficPolicy('pool-breaker', 'pool', { circuitBreaker: { consecutiveFailures: 3, ejectionTime: `${EJECTION_MS / 1000}s` } })] });
    const ejections = (): Promise<number> => webMetric('tsmesh_endpoint_ejections_total', { destination_service: `pool.${NS}` });
    const ejectionsBefore = await ejections();
    // 100 requests a second for 25 s; b3 fails once it has answered 10 (it is in the rotation) until it is
    // told to recover, 1 s after its ejection. At this low concurrency the balancer may send b3 little for
    // a while (it prefers the lowest latency estimate), so both the 10 requests and its three failures may
    // take some seconds to come: the load leaves room for that.
    const loadRun = lab!.startLoad('web', { origin: origin('pool'), path: '/pool?i={i}', mode: 'rate', ratePerSecond: 100, durationMs: 25_000, maxRequests: 2500, timeoutMs: 10_000, timeline: true });
    await loadRun.line((l) => l.startsWith('{"started":'), 30_000);
    await waitFor('b3 to answer 10 requests', async () => (lab!.appRequests('b3', '/pool').length >= 10 ? true : undefined), 8_000, 50);
    await lab!.controlApp('b3', { fail: { status: 500 } });
    const failFrom = Date.now();
    await waitFor('b3 to be ejected', async () => ((await ejections()) > ejectionsBefore ? true : undefined), 10_000, 50);
    await sleep(1000);
    await lab!.controlApp('b3', { fail: null });
    const recoveredAt = Date.now();
    const s = await lab!.loadSummary(loadRun, 60_000);

    const b3 = lab!.appRequests('b3', '/pool');
    const failures = b3.filter((r) => r.status === 500);
    const lastFailure = failures.at(-1)!;
    const beforeFailing = b3.filter((r) => r.at < failFrom).length;
    const next = b3.find((r) => r.at > lastFailure.at);
    const afterReturn = next ? b3.filter((r) => r.at >= next.at).length : 0;
    const allAfterReturn = next ? (s.timeline ?? []).filter((q: RequestRecord) => q.start >= next.at).length : 0;
    const healthy = ['b1', 'b2'].map((p) => lab!.appRequests(p, '/pool').length);
    console.log(
      `      ${s.sent} requests in ${seconds(s)} s: b3 took ${beforeFailing} before failing, answered ${failures.length} with 500, ` +
        `then nothing for ${next ? next.at - lastFailure.at : '-'} ms (ejection ${EJECTION_MS} ms), then ${afterReturn} of the last ${allAfterReturn}; ` +
        `b1 ${healthy[0]}, b2 ${healthy[1]}; client saw ${JSON.stringify(s.statuses)}`,
    );
    assert.ok(beforeFailing >= 10, `b3 got ${beforeFailing} requests before it failed`);
    assert.ok(failures.length >= 3 && failures.length <= 3 + 5, `three failures in a row (plus what was in flight): ${failures.length}`);
    assert.equal((await ejections()) - ejectionsBefore, 1);
    // Every request b3 failed reached the client as a 500 (no retry policy); every other one succeeded.
    assert.deepEqual(s.statuses, { 200: s.sent - failures.length, 500: failures.length });
    assert.ok(next, 'b3 never got traffic back');
    // Nothing while ejected, though it recovered `recoveredAt`: back only through the probe, once the ejection time is up.
    assert.ok(next.at - lastFailure.at >= EJECTION_MS - 300, `b3 got a request ${next.at - lastFailure.at} ms after its last failure`);
    assert.ok(next.at - lastFailure.at <= EJECTION_MS + 2000, `b3 was out for ${next.at - lastFailure.at} ms`);
    assert.ok(next.at > recoveredAt);
    assert.equal(next.status, undefined, 'the probe succeeded');
    // Back in the balancer. How much it gets then depends on the latency estimates (peak EWMA, power of two
    // choices): at this low concurrency the endpoint measured fastest takes most, so only a floor is asserted.
    assert.ok(afterReturn >= 10, `b3 got ${afterReturn} of the ${allAfterReturn} requests after it came back`);
  });

  it('aborts 5% +- 1.5% of 4,000 requests with the configured status, before they reach the backend', async function () {
    await applyPolicies({ trafficPolicies: [trafficPolicy('faulty-abort', 'faulty', { faults: { abort: { percent: 5, status: 503 } } })] });
    const s = await load('faulty', { path: '/abort?i={i}', maxRequests: 4000 });
    const aborted = s.statuses['503'] ?? 0;
    const reached = lab!.appRequests('b1', '/abort').length;
    const injected = await webMetric('tsmesh_faults_injected_total', { destination_service: `faulty.${NS}`, kind: 'abort' });
    console.log(`      ${s.sent} requests in ${seconds(s)} s: ${aborted} aborted with 503 (${((aborted / s.sent) * 100).toFixed(2)}%), ${reached} reached b1; ${injected} counted`);
    assert.equal(s.sent, 4000);
    assert.deepEqual(s.statuses, { 200: 4000 - aborted, 503: aborted });
    assert.ok(aborted >= 140 && aborted <= 260, `${aborted} of 4000 aborted`);
    assert.deepEqual(s.meshErrors, { 'fault-injected': aborted });
    assert.equal(reached, 4000 - aborted);
    assert.equal(injected, aborted);
  });

  it("adds a delay fault's duration to its share of requests", async function () {
    const DELAY_MS = 500;
    await applyPolicies({ trafficPolicies: [trafficPolicy('delayed-delay', 'delayed', { faults: { delay: { percent: 20, duration: `${DELAY_MS}ms` } } })] });
    const s = await load('delayed', { path: '/delay?i={i}', maxRequests: 1000, concurrency: 20, timeline: true });
    const durations = (s.timeline ?? []).map((q) => q.end - q.start);
    // Timers fire no earlier than asked; Date.now() rounds, hence a millisecond of slack.
    const slow = durations.filter((d) => d >= DELAY_MS - 1);
    const fast = durations.filter((d) => d < DELAY_MS - 1);
    const injected = await webMetric('tsmesh_faults_injected_total', { destination_service: `delayed.${NS}`, kind: 'delay' });
    const added = median(slow) - median(fast);
    console.log(
      `      ${s.sent} requests in ${seconds(s)} s: ${injected} delayed (${((injected / s.sent) * 100).toFixed(1)}%); ${slow.length} took >= ${DELAY_MS} ms; ` +
        `median ${median(fast)} ms undelayed, ${median(slow)} ms delayed (+${added} ms)`,
    );
    assert.equal(s.sent, 1000);
    assert.equal(s.failed, 0, describeFailures(s));
    assert.ok(injected >= 160 && injected <= 240, `${injected} of 1000 delayed`);
    // The requests that took the delay are the ones delayed, give or take one in a hundred slowed by the machine.
    assert.ok(Math.abs(slow.length - injected) <= 10, `${slow.length} requests took >= ${DELAY_MS} ms, ${injected} were delayed`);
    // The same millisecond of rounding on each side of the difference.
    assert.ok(added >= DELAY_MS - 1 && added <= DELAY_MS + 100, `the delay added ${added} ms`);
    assert.ok(median(fast) < 100, `undelayed requests took ${median(fast)} ms`);
  });

  it('answers an unlisted caller 403 and a listed one 200 (authorization policy on the destination)', async function () {
    await applyPolicies(
      { authorizationPolicies: [{ name: 'only-web', namespace: NS, targetRef: { kind: 'Service', name: 'secure' }, rules: [{ serviceAccounts: [`${NS}/web`] }] }] },
      'canary',
    );
    const listed = await lab!.curl('web', [`${origin('secure')}/secure?from=web`], APP_USER);
    assert.equal(listed.status, 200, `${listed.error} ${listed.body}`);
    const unlisted = await lab!.curl('other', ['-i', `${origin('secure')}/secure?from=other`], APP_USER);
    assert.equal(unlisted.status, 403, unlisted.body);
    assert.match(unlisted.body, /x-tsmesh-error: denied/i);
    assert.ok(unlisted.body.includes(`${lab!.identity('other')} may not call port ${APP_HTTP_PORT}`), unlisted.body);
    assert.match(unlisted.body, /only-web/);

    const fromWeb = await load('secure', { path: '/secure?from=web&i={i}', maxRequests: 200, concurrency: 4 });
    const fromOther = await load('secure', { path: '/secure?from=other&i={i}', maxRequests: 200, concurrency: 4 }, 'other');
    console.log(`      web: ${JSON.stringify(fromWeb.statuses)}; other: ${JSON.stringify(fromOther.statuses)} ${JSON.stringify(fromOther.meshErrors)}`);
    assert.deepEqual(fromWeb.statuses, { 200: 200 });
    assert.deepEqual(fromOther.statuses, { 403: 200 });
    assert.deepEqual(fromOther.meshErrors, { denied: 200 });
    assert.equal(lab!.appRequests('canary', '/secure?from=web').length, 201);
    assert.equal(lab!.appRequests('canary', '/secure?from=other').length, 0, 'a denied request reached the app');
    const denials = total(await lab!.metrics('canary'), 'tsmesh_authz_denials_total', { source_identity: lab!.identity('other') });
    assert.equal(denials, 201);
  });

  it("carries the caller's traceparent to the backend byte for byte, and starts no trace without one (no span export)", async function () {
    await applyPolicies({});
    const sent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await lab!.curl('web', ['-H', `traceparent: ${sent}`, `${origin('api')}/trace?with=traceparent`], APP_USER);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    const [seen] = lab!.appRequests('b1', '/trace?with=traceparent');
    assert.equal(seen?.traceparent, sent);

    // Without one, the app gets none: its own sampler decides.
    assert.equal((await lab!.curl('web', [`${origin('api')}/trace?with=none`], APP_USER)).status, 200);
    const [plain] = lab!.appRequests('b1', '/trace?with=none');
    assert.ok(plain, 'the app saw the request');
    assert.equal(plain.traceparent, undefined);
  });
});
