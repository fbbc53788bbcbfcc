import assert from 'node:assert/strict';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { buildRoutingTable, type ServiceTarget } from '../config/table.js';
import { parseProxyConfig } from '../../contract/validate.js';
import { LinearRegExp } from '../../lib/linear-regexp.js';
import { compileMatch, compileRoutes, matches, parseQuery, routeRequests, type CompiledMatch } from './route.js';
import { splitByWeight } from './split.js';
import { testRequest, testResponse } from './testdata/requests.js';
import type { Handler } from './types.js';

const service = (name: string, ports: object[], trafficPolicy?: object) => ({
  name,
  namespace: 'shop',
  clusterIPs: [],
  ports,
  endpoints: [{ address: '10.0.0.1' }],
  ...(trafficPolicy ? { trafficPolicy } : {}),
});

function table(trafficPolicy: object) {
  return buildRoutingTable(
    parseProxyConfig({
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'ProxyConfig',
      services: [
        service('api', [{ port: 80, name: 'http' }], trafficPolicy),
        service('api-canary', [{ port: 80, name: 'http' }]),
        service('api-v2', [{ port: 8080, name: 'http' }, { port: 9090, name: 'admin' }]),
        service('api-v3', [{ port: 7000 }]),
        service('api-other-ports', [{ port: 81 }, { port: 82 }]),
      ],
    }),
  );
}

const answer =
  (name: string): Handler =>
  () =>
    Promise.resolve({ ...testResponse(200), headers: { from: name } });

describe('route matching', () => {
  const m = (pathPrefix?: string, headers: [string, string][] = []): CompiledMatch => compileMatch({ ...(pathPrefix ? { pathPrefix } : {}), headers: Object.fromEntries(headers) })!;

  it('matches a path prefix on whole segments', () => {
    for (const path of ['/api', '/api/', '/api/v1/orders', '/api?q=1', '/api#x']) assert.ok(matches(m('/api'), testRequest({ path })), path);
    for (const path of ['/apis', '/ap', '/', '/v1/api']) assert.ok(!matches(m('/api'), testRequest({ path })), path);
  });

  it('matches exact header values; every listed header must match', () => {
    const match = m(undefined, [['x-canary', 'yes'], ['x-user', 'ann']]);
    assert.ok(matches(match, testRequest({ headers: { 'x-canary': 'yes', 'x-user': 'ann' } })));
    assert.ok(!matches(match, testRequest({ headers: { 'x-canary': 'yes' } })));
    assert.ok(!matches(match, testRequest({ headers: { 'x-canary': 'YES', 'x-user': 'ann' } })));
    assert.ok(matches(m(undefined, [['cookie', 'b']]), testRequest({ headers: { cookie: ['a', 'b'] as unknown as string } })));
  });

  it('matches an exact path and a regex on the whole path, both without the query', () => {
    const exact = compileMatch({ pathExact: '/a/b' })!;
    for (const path of ['/a/b', '/a/b?x=1']) assert.ok(matches(exact, testRequest({ path })), path);
    for (const path of ['/a/b/', '/a/bc', '/a']) assert.ok(!matches(exact, testRequest({ path })), path);
    const regex = compileMatch({ pathRegex: '/v[0-9]+/items' })!;
    for (const path of ['/v1/items', '/v22/items?q=/x']) assert.ok(matches(regex, testRequest({ path })), path);
    // Anchored: a regex that matches part of the path does not match it.
    for (const path of ['/v1/items/1', '/x/v1/items', '/v/items']) assert.ok(!matches(regex, testRequest({ path })), path);
  });

  it('runs path, header and query regexes on the linear-time matcher: a hostile pattern and value cost work linear in the value', () => {
    // On a backtracking RegExp each of these takes time exponential in the
    // value's length (about a second at 24 characters, years at 48).
    const hostile = compileMatch({ pathRegex: '/(a+)+', headerRegex: { 'X-User': '(\\w+\\s?)+' }, queryParamRegex: { q: '(a|a)*' } })!;
    const regexes = [hostile.pathRegex!, hostile.headerRegex[0]![1], hostile.query[0]![1] as LinearRegExp];
    for (const re of regexes) assert.ok(re instanceof LinearRegExp, String(re));
    const long = 'a'.repeat(20_000);
    const requests = [
      testRequest({ path: `/${long}!` }),
      testRequest({ path: `/${long}`, headers: { 'x-user': `${'ab '.repeat(7_000)}!` } }),
      testRequest({ path: `/${long}?q=${long}!`, headers: { 'x-user': 'ab cd' } }),
    ];
    for (const [i, req] of requests.entries()) {
      assert.equal(matches(hostile, req), false, `request ${i}`);
      // The value needs 20,000 characters or more to be refused; the matcher
      // visited at most a few NFA states for each (it caches what it built).
      const work = regexes[i]!.work;
      assert.ok(work > 0 && work < 1000, `request ${i}: ${work} states visited`);
    }
    assert.ok(matches(hostile, testRequest({ path: `/${long}?q=aaa`, headers: { 'x-user': 'ab cd' } })));
  });

  it('matches header regexes on the whole value, the method, and query parameters (first of a name, decoded)', () => {
    const h = compileMatch({ headerRegex: { 'X-Version': 'v[12]' } })!;
    assert.ok(matches(h, testRequest({ headers: { 'x-version': 'v2' } })));
    assert.ok(!matches(h, testRequest({ headers: { 'x-version': 'v23' } })));
    assert.ok(!matches(h, testRequest({})));
    const method = compileMatch({ method: 'POST' })!;
    assert.ok(matches(method, testRequest({ method: 'POST' })));
    assert.ok(!matches(method, testRequest({ method: 'GET' })));
    const q = compileMatch({ queryParams: { animal: 'whale' }, queryParamRegex: { n: '[0-9]+' } })!;
    assert.ok(matches(q, testRequest({ path: '/?animal=whale&n=12' })));
    assert.ok(matches(q, testRequest({ path: '/?n=1&animal=wh%61le&animal=dolphin' })));
    assert.ok(!matches(q, testRequest({ path: '/?animal=dolphin&animal=whale&n=1' })));
    assert.ok(!matches(q, testRequest({ path: '/?animal=whale&n=1x' })));
    assert.ok(!matches(q, testRequest({ path: '/' })));
    assert.deepEqual([...parseQuery('/p?a=1&b&a=2&c=x+y&d=%zz#f')], [['a', '1'], ['b', ''], ['c', 'x y'], ['d', '%zz']]);
  });

  it('compiles routes in order, inherits the policy settings, and ends with the default route', () => {
    const t = table({
      timeout: '2s',
      retries: { attempts: 3 },
      routes: [
        { name: 'ab', match: { headers: { 'X-Canary': 'yes' } }, backends: [{ service: 'api-canary', weight: 1 }], timeout: '500ms' },
        { match: { pathPrefix: '/v2/' }, backends: [{ service: 'api-v2.shop', weight: 1 }] },
      ],
    });
    const routes = compileRoutes(t.byName.get('api.shop')!.get(80)!, t);
    assert.deepEqual(
      routes.map((r) => [r.name, r.timeoutMs, r.retries?.attempts, r.backends.map((b) => `${b.service}:${b.target?.port.port}`)]),
      [
        ['ab', 500, 3, ['api-canary.shop:80']],
        ['route-1', 2000, 3, ['api-v2.shop:8080']],
        ['default', 2000, 3, ['api.shop:80']],
      ],
    );
    assert.deepEqual(routes[0]!.match!.headers, [['x-canary', 'yes']]);
    assert.equal(routes[0]!.match!.pathPrefix, undefined);
    assert.equal(routes[1]!.match!.pathPrefix, '/v2');
  });

  it('resolves backends by port number, then port name, then a single port; anything else is missing', () => {
    const t = table({
      routes: [
        {
          backends: [
            { service: 'api-v3', weight: 1 },
            { service: 'api-other-ports', weight: 1 },
            { service: 'nowhere.else', weight: 1 },
            { service: 'api', weight: 0 },
          ],
        },
      ],
    });
    const routes = compileRoutes(t.byName.get('api.shop')!.get(80)!, t);
    assert.equal(routes.length, 1, 'a route without a match catches everything: no default route after it');
    assert.deepEqual(
      routes[0]!.backends.map((b) => [b.service, b.target?.port.port]),
      [
        ['api-v3.shop', 7000],
        ['api-other-ports.shop', undefined],
        ['nowhere.else', undefined],
      ],
    );
  });

  it('dispatches to the first route that matches', async () => {
    const handler = routeRequests([
      { match: m('/admin'), handler: answer('admin') },
      { match: m(undefined, [['x-canary', 'yes']]), handler: answer('canary') },
      { match: undefined, handler: answer('default') },
    ]);
    const from = async (over: Parameters<typeof testRequest>[0]) => (await handler(testRequest(over))).headers.from;
    assert.equal(await from({ path: '/admin/users', headers: { 'x-canary': 'yes' } }), 'admin');
    assert.equal(await from({ path: '/shop', headers: { 'x-canary': 'yes' } }), 'canary');
    assert.equal(await from({ path: '/shop' }), 'default');
  });

  it('with no policy is the service itself, without a dispatch step', () => {
    const t = table({});
    const target: ServiceTarget = t.byName.get('api-canary.shop')!.get(80)!;
    const routes = compileRoutes(target, t);
    assert.equal(routes.length, 1);
    assert.equal(routes[0]!.backends[0]!.target, target);
    const only = answer('only');
    assert.equal(routeRequests([{ match: undefined, handler: only }]), only);
  });
});

describe('traffic split', () => {
  it('sends requests in proportion to the weights (90/10 canary)', async () => {
    const handler = splitByWeight(
      [
        { weight: 90, handler: answer('stable') },
        { weight: 10, handler: answer('canary') },
        { weight: 0, handler: answer('never') },
      ],
      seededRandom(3),
    );
    const seen = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const from = String((await handler(testRequest())).headers.from);
      seen.set(from, (seen.get(from) ?? 0) + 1);
    }
    assert.equal(seen.get('never'), undefined);
    const canary = seen.get('canary')! / 10_000;
    assert.ok(canary > 0.09 && canary < 0.11, `canary share ${canary}`);
  });

  it('is the backend itself when there is one', () => {
    const h = answer('one');
    assert.equal(splitByWeight([{ weight: 5, handler: h }]), h);
    assert.throws(() => splitByWeight([{ weight: 0, handler: h }]), /no backend/);
  });
});
