// The validator's checks of the Gateway API route fields: what it keeps, and
// what it refuses with the field's path and what to do instead.
import assert from 'node:assert/strict';
import { ConfigError, parseProxyConfig } from './validate.js';
import type { Route } from './proxy-config.js';

const config = (service: object) => ({ apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', services: [{ name: 'a', namespace: 'b', clusterIPs: [], ports: [{ port: 80 }], endpoints: [], ...service }] });
/** The routes of port 80 as the validator returns them. */
const gateway = (routes: object[]): Route[] => parseProxyConfig(config({ gatewayRoutes: [{ port: 80, routes }] })).services[0]!.gatewayRoutes![0]!.routes;
const refuses = (routes: object[], message: RegExp) => assert.throws(() => gateway(routes), (e: unknown) => e instanceof ConfigError && message.test(e.message));
const R = 'services[0].gatewayRoutes[0].routes[0]';
const esc = (s: string) => s.replace(/[.[\]]/g, '\\$&');

describe('contract/validate: Gateway API routes', () => {
  it('keeps every match kind and filter, header names lowercased', () => {
    const [r] = gateway([
      {
        name: 'httproute/ns/r/rule-0',
        match: { pathPrefix: '/api', headers: { 'X-Env': 'canary' }, headerRegex: { 'X-Version': 'v[0-9]+' }, queryParams: { q: '1' }, queryParamRegex: { page: '[0-9]+' }, method: 'GET' },
        filters: {
          requestHeaders: { set: { 'X-A': '1' }, add: { 'X-B': '2' }, remove: ['X-C'] },
          responseHeaders: { set: { 'X-D': '4' } },
          rewrite: { hostname: 'example.org', path: { replacePrefixMatch: '/' } },
          mirrors: [{ service: 'shadow', port: 8080, percent: 50 }],
        },
        backends: [{ service: 'b', weight: 1, port: 8080, filters: { requestHeaders: { set: { 'X-Backend': 'b' } }, mirrors: [{ service: 'shadow' }] } }],
        timeout: '10s',
        backendTimeout: '2s',
      },
    ]);
    assert.deepEqual(r!.match, { pathPrefix: '/api', headers: { 'x-env': 'canary' }, headerRegex: { 'x-version': 'v[0-9]+' }, queryParams: { q: '1' }, queryParamRegex: { page: '[0-9]+' }, method: 'GET' });
    assert.deepEqual(r!.filters!.requestHeaders, { set: { 'x-a': '1' }, add: { 'x-b': '2' }, remove: ['x-c'] });
    assert.equal(r!.backendTimeout, '2s');
    assert.equal(r!.backends![0]!.port, 8080);
  });

  it('takes an empty backends list (every request of the route gets 500) and a redirect without backends', () => {
    assert.deepEqual(gateway([{ backends: [] }])[0]!.backends, []);
    assert.deepEqual(gateway([{ filters: { redirect: { scheme: 'https', port: 8443, statusCode: 301, path: { replaceFullPath: '/x' } } } }])[0]!.filters!.redirect, {
      scheme: 'https',
      port: 8443,
      statusCode: 301,
      path: { replaceFullPath: '/x' },
    });
  });

  const cases: [string, object, RegExp][] = [
    ['a regex that does not compile', { match: { pathRegex: '/a(b' } }, new RegExp(`^${esc(R)}\\.match\\.pathRegex: "/a\\(b" is not a regular expression .*fix the pattern`)],
    ['lookahead', { match: { pathRegex: '/a(?=b)' } }, new RegExp(`^${esc(R)}\\.match\\.pathRegex: .*lookaround.*RE2`)],
    ['lookbehind in a header regex', { match: { headerRegex: { x: '(?<!a)b' } } }, new RegExp(`^${esc(R)}\\.match\\.headerRegex\\.x: .*lookaround`)],
    ['a backreference', { match: { queryParamRegex: { q: '(a)\\1' } } }, new RegExp(`^${esc(R)}\\.match\\.queryParamRegex\\.q: .*backreference`)],
    ['a count past RE2\'s 1000', { match: { pathRegex: '/a{1001}' } }, new RegExp(`^${esc(R)}\\.match\\.pathRegex: "/a\\{1001\\}": the repetition \\{1001\\} counts past 1000 \\(RE2's bound\\); use \\* or \\+`)],
    ['counts that multiply past the matcher\'s bound', { match: { headerRegex: { x: '(?:[a-z]{1,100}\\.){1,100}' } } }, new RegExp(`^${esc(R)}\\.match\\.headerRegex\\.x: .*unrolls to more than 5000 states .*write smaller counts`)],
    ['two path matches', { match: { pathPrefix: '/a', pathExact: '/a' } }, /pathPrefix and pathExact are both set; a match takes one of/],
    ['a header name with a colon', { match: { headers: { ':authority': 'x' } } }, /match\.headers\.:authority: ":authority" is not a header name/],
    ['a header name with a space', { filters: { requestHeaders: { set: { 'x y': '1' } } } }, /filters\.requestHeaders\.set\.x y: "x y" is not a header name/],
    ['a header value with a line break', { filters: { requestHeaders: { add: { x: 'a\r\nb' } } } }, /filters\.requestHeaders\.add\.x: .*line break/],
    ['a lowercase method', { match: { method: 'get' } }, /match\.method: "get" is not an HTTP method/],
    ['redirect status 300', { filters: { redirect: { statusCode: 300 } } }, /filters\.redirect\.statusCode: 300 is not a redirect status a route may answer; use one of 301, 302, 303, 307, 308/],
    ['redirect scheme ftp', { filters: { redirect: { scheme: 'ftp' } } }, /filters\.redirect\.scheme: "ftp"/],
    ['redirect port 0', { filters: { redirect: { port: 0 } } }, /filters\.redirect\.port: 0 is not a port/],
    ['redirect port 65536', { filters: { redirect: { port: 65536 } } }, /filters\.redirect\.port: 65536 is not a port/],
    ['a hostname with a port', { filters: { rewrite: { hostname: 'example.org:80' } } }, /filters\.rewrite\.hostname: "example\.org:80" is not a host name/],
    ['a path modifier with both', { filters: { rewrite: { path: { replaceFullPath: '/a', replacePrefixMatch: '/b' } } } }, /filters\.rewrite\.path: give exactly one of replaceFullPath/],
    ['a path modifier with neither', { filters: { redirect: { path: {} } } }, /filters\.redirect\.path: give exactly one of replaceFullPath/],
    ['replacePrefixMatch on an exact match', { match: { pathExact: '/a' }, filters: { rewrite: { path: { replacePrefixMatch: '/b' } } } }, /filters\.rewrite\.path\.replacePrefixMatch: replaces the prefix a pathPrefix match matched/],
    ['replacePrefixMatch on a regex match', { match: { pathRegex: '/a.*' }, filters: { redirect: { path: { replacePrefixMatch: '/b' } } } }, /filters\.redirect\.path\.replacePrefixMatch: .*use replaceFullPath/],
    ['redirect and rewrite together', { filters: { redirect: {}, rewrite: {} } }, new RegExp(`^${esc(R)}\\.filters: a route cannot both redirect and rewrite`)],
    ['redirect with backends', { backends: [{ service: 'b', weight: 1 }], filters: { redirect: {} } }, /filters\.redirect: a route that redirects answers every request itself/],
    ['a mirror percent above 100', { filters: { mirrors: [{ service: 's', percent: 101 }] } }, /filters\.mirrors\[0\]\.percent: 101/],
    ['a mirror percent below 0', { filters: { mirrors: [{ service: 's', percent: -1 }] } }, /filters\.mirrors\[0\]\.percent: -1/],
    ['a redirect on a backend', { backends: [{ service: 'b', weight: 1, filters: { redirect: {} } }] }, /backends\[0\]\.filters: a backend takes header modifiers and mirrors only/],
    ['a unit-less backendTimeout', { backendTimeout: '5' }, /backendTimeout: duration "5" is not a duration/],
    ['an exact path with a query', { match: { pathExact: '/a?b=1' } }, /match\.pathExact: "\/a\?b=1" must start with "\/" and hold no "\?"/],
    ['a replaceFullPath without "/"', { filters: { rewrite: { path: { replaceFullPath: 'x' } } } }, /filters\.rewrite\.path\.replaceFullPath: "x" must start with "\/"/],
    ['an unknown filter', { filters: { cors: {} } }, /filters\.cors: unknown field/],
    ['backends all of weight 0', { backends: [{ service: 'b', weight: 0 }] }, /backends: at least one backend needs a weight above 0/],
  ];
  for (const [name, r, message] of cases) it(`refuses ${name}`, () => refuses([r], message));

  it('refuses routes for a port the service does not have, and a port listed twice', () => {
    assert.throws(() => parseProxyConfig(config({ gatewayRoutes: [{ port: 81, routes: [] }] })), /services\[0\]\.gatewayRoutes\[0\]\.port: 81 is not a port of the service; routes attach to one of 80/);
    assert.throws(
      () =>
        parseProxyConfig(
          config({
            gatewayRoutes: [
              { port: 80, routes: [] },
              { port: 80, routes: [] },
            ],
          }),
        ),
      /gatewayRoutes\[1\]\.port: port 80 is listed twice/,
    );
  });

  it('refuses an empty backends list in a TrafficPolicy (only a Gateway API rule has one, for backends that did not resolve)', () => {
    assert.throws(() => parseProxyConfig(config({ trafficPolicy: { routes: [{ backends: [] }] } })), /services\[0\]\.trafficPolicy\.routes\[0\]\.backends: at least one backend needs a weight above 0/);
  });

  it('takes an empty replacePrefixMatch (it removes the matched prefix) on a prefix match or a route matching every path', () => {
    assert.deepEqual(gateway([{ match: { pathPrefix: '/a' }, filters: { rewrite: { path: { replacePrefixMatch: '' } } } }])[0]!.filters!.rewrite!.path, { replacePrefixMatch: '' });
    assert.deepEqual(gateway([{ filters: { redirect: { path: { replacePrefixMatch: '/x' } } } }])[0]!.filters!.redirect!.path, { replacePrefixMatch: '/x' });
  });

  it('takes patterns a backtracking matcher would take exponential time on (the proxy runs them in linear time)', () => {
    for (const p of ['/(a+)+', '(a|a)*', '(.*)*b', '(\\w+\\s?)+']) assert.equal(gateway([{ match: { headerRegex: { x: p } } }])[0]!.match!.headerRegex!['x'], p);
  });

  it('takes RE2 patterns that look like lookaround or backreferences but are not', () => {
    assert.equal(gateway([{ match: { pathRegex: '/a\\(\\?=b\\)' } }])[0]!.match!.pathRegex, '/a\\(\\?=b\\)');
    assert.equal(gateway([{ match: { pathRegex: '/x\\\\1' } }])[0]!.match!.pathRegex, '/x\\\\1');
  });
});
