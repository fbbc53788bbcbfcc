import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../lib/log.js';
import { FileConfigSource, readConfigFile } from './file.js';
import { buildRoutingTable } from './table.js';
import { ConfigError, parseProxyConfig } from '../../contract/validate.js';

const EXAMPLE = join(import.meta.dirname, 'testdata', 'two-services.yaml');
const minimal = (extra: object = {}) => ({ apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', ...extra });
/** A config of one service with this traffic policy. */
const withPolicy = (trafficPolicy: object) => minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: [], ports: [], endpoints: [], trafficPolicy }] });

describe('proxy config', () => {
  it('reads the example file and fills defaults', () => {
    const c = readConfigFile(EXAMPLE);
    assert.equal(c.version, '7');
    assert.deepEqual(c.mesh.retryBudget, { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' });
    assert.equal(c.services[0]!.ports[1]!.targetPort, 5432);
    assert.equal(c.services[1]!.ports[0]!.protocol, 'auto');
    assert.deepEqual(c.services[0]!.trafficPolicy!.routes![0]!.match!.headers, { 'x-canary': 'yes' });
    assert.equal(c.inbound.mtlsMode, 'PERMISSIVE');
  });

  it('defaults an empty config to STRICT mTLS in cluster.local with no services', () => {
    const c = parseProxyConfig(minimal());
    assert.equal(c.mesh.mtlsMode, 'STRICT');
    assert.equal(c.mesh.trustDomain, 'cluster.local');
    assert.deepEqual(c.services, []);
  });

  it('keeps a policy\'s limits as written, the bounds included, and fills no defaults', () => {
    const limitsOf = (limits: object) => parseProxyConfig(withPolicy({ limits })).services[0]!.trafficPolicy!.limits;
    assert.deepEqual(limitsOf({ maxRequestsPerEndpoint: 1, maxPendingRequests: 1_000_000, pendingTimeout: '1h' }), { maxRequestsPerEndpoint: 1, maxPendingRequests: 1_000_000, pendingTimeout: '1h' });
    assert.deepEqual(limitsOf({ maxRequestsPerEndpoint: 1_000_000, maxPendingRequests: 1, pendingTimeout: '1ms' }), { maxRequestsPerEndpoint: 1_000_000, maxPendingRequests: 1, pendingTimeout: '1ms' });
    assert.deepEqual(limitsOf({ pendingTimeout: '59m59s1000ms' }), { pendingTimeout: '59m59s1000ms' });
    assert.deepEqual(limitsOf({}), {});
    assert.equal(parseProxyConfig(withPolicy({ timeout: '1s' })).services[0]!.trafficPolicy!.limits, undefined);
  });

  it('compiles a routing table: ClusterIP:port to the service port, ready endpoints with their ports', () => {
    const t = buildRoutingTable(readConfigFile(EXAMPLE));
    const http = t.byAddress.get('10.96.0.20:80')!;
    assert.equal(http.key, 'payments.shop');
    assert.deepEqual(http.endpoints.map((e) => `${e.address}:${e.port}/${e.weight}`), ['10.244.1.5:8080/1', '10.244.2.7:9090/3']);
    assert.equal(t.byAddress.get('fd00:10:96::20:5432')!.port.protocol, 'tcp');
    assert.equal(t.byAddress.get('10.96.0.20:81'), undefined);
    assert.equal(t.byName.get('payments-v2.shop')!.get(80)!.endpoints.length, 1);
  });

  const bad: [string, object, RegExp][] = [
    ['wrong apiVersion', { apiVersion: 'v1', kind: 'ProxyConfig' }, /^apiVersion: "v1" is not tsmesh\.io\/v1alpha1/],
    ['an unknown field', minimal({ servics: [] }), /^servics: unknown field/],
    ['a bad port', minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: ['10.0.0.1'], ports: [{ port: 70000 }], endpoints: [] }] }), /^services\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\)/],
    ['a bad IP', minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: ['10.0.0'], ports: [], endpoints: [] }] }), /clusterIPs\[0\]: "10\.0\.0" is not an IPv4 or IPv6 address/],
    ['a bad identity', minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: [], ports: [], endpoints: [{ address: '10.0.0.1', identity: 'spiffe://x//y' }] }] }), /endpoints\[0\]\.identity: invalid SPIFFE ID/],
    ['a unit-less timeout', withPolicy({ timeout: '5' }), /trafficPolicy\.timeout: duration "5" is not a duration/],
    ['too many retry attempts', withPolicy({ retries: { attempts: 50 } }), /retries\.attempts: 50 is not a number of attempts \(1-10\)/],
    ['an unknown retry condition', withPolicy({ retries: { attempts: 2, retryOn: ['sometimes'] } }), /retryOn\[0\]: "sometimes" is not a retry condition/],
    ['all-zero weights', withPolicy({ routes: [{ backends: [{ service: 'a', weight: 0 }] }] }), /at least one backend needs a weight above 0/],
    ['no room for pending requests', withPolicy({ limits: { maxPendingRequests: 0 } }), /^services\[0\]\.trafficPolicy\.limits\.maxPendingRequests: 0 is not a whole number \(1-1000000\)/],
    ['a fractional request limit', withPolicy({ limits: { maxRequestsPerEndpoint: 1.5 } }), /^services\[0\]\.trafficPolicy\.limits\.maxRequestsPerEndpoint: 1\.5 is not a whole number/],
    ['a request limit above 1000000', withPolicy({ limits: { maxRequestsPerEndpoint: 1_000_001 } }), /^services\[0\]\.trafficPolicy\.limits\.maxRequestsPerEndpoint: 1000001 is not a whole number/],
    ['a request limit written as a string', withPolicy({ limits: { maxRequestsPerEndpoint: '64' } }), /^services\[0\]\.trafficPolicy\.limits\.maxRequestsPerEndpoint: "64" is not a whole number/],
    ['an unknown limit', withPolicy({ limits: { maxConnections: 10 } }), /^services\[0\]\.trafficPolicy\.limits\.maxConnections: unknown field; expected one of maxRequestsPerEndpoint, maxPendingRequests, pendingTimeout/],
    ['limits that are not an object', withPolicy({ limits: 256 }), /^services\[0\]\.trafficPolicy\.limits: expected an object, found 256/],
    ['a unit-less pending timeout', withPolicy({ limits: { pendingTimeout: '5' } }), /^services\[0\]\.trafficPolicy\.limits\.pendingTimeout: duration "5" is not a duration/],
    ['a zero pending timeout', withPolicy({ limits: { pendingTimeout: '0s' } }), /^services\[0\]\.trafficPolicy\.limits\.pendingTimeout: "0s" is not a duration from 1ms to 1h/],
    ['a pending timeout under 1ms', withPolicy({ limits: { pendingTimeout: '0.4ms' } }), /^services\[0\]\.trafficPolicy\.limits\.pendingTimeout: "0\.4ms" is not a duration from 1ms to 1h/],
    ['a pending timeout above 1h', withPolicy({ limits: { pendingTimeout: '1h1ms' } }), /^services\[0\]\.trafficPolicy\.limits\.pendingTimeout: "1h1ms" is not a duration from 1ms to 1h/],
    ['a retry budget ratio above 1', minimal({ mesh: { retryBudget: { ratio: 3 } } }), /^mesh\.retryBudget\.ratio: 3 is not a number from 0 to 1/],
    ['a bad mTLS mode', minimal({ mesh: { mtlsMode: 'strict' } }), /^mesh\.mtlsMode: "strict" is not one of STRICT, PERMISSIVE/],
    ['two services on one address', minimal({ services: [
      { name: 'a', namespace: 'n', clusterIPs: ['10.0.0.1'], ports: [{ port: 80 }], endpoints: [] },
      { name: 'b', namespace: 'n', clusterIPs: ['10.0.0.1'], ports: [{ port: 80 }], endpoints: [] },
    ] }), /10\.0\.0\.1:80 is claimed by both a\.n and b/],
    ['a skipped inbound port out of range', minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: [], ports: [], endpoints: [{ address: '10.0.0.1', skipInboundPorts: ['25', '70000'] }] }] }), /^services\[0\]\.endpoints\[0\]\.skipInboundPorts\[1\]: "70000" is not a port \(1-65535\) or a range of ports/],
    ['a skipped inbound range the wrong way round', minimal({ services: [{ name: 'a', namespace: 'b', clusterIPs: [], ports: [], endpoints: [{ address: '10.0.0.1', skipInboundPorts: ['9100-9000'] }] }] }), /skipInboundPorts\[0\]: "9100-9000" is not a port/],
    ['a malformed service account', minimal({ inbound: { authorization: [{ name: 'p', rules: [{ serviceAccounts: ['web'] }] }] } }), /must be written <namespace>\/<serviceaccount>/],
  ];
  for (const [what, doc, message] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      assert.throws(() => parseProxyConfig(doc), (e: unknown) => e instanceof ConfigError && message.test(e.message));
    });
  }

  it('a file source keeps the last good config when the file turns bad, and takes the next good one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-config-'));
    const path = join(dir, 'config.yaml');
    const lines: string[] = [];
    try {
      writeFileSync(path, JSON.stringify(minimal({ version: '1' })));
      const source = new FileConfigSource(path, createLogger('test', 'info', (l) => lines.push(l)), 20);
      const seen: string[] = [];
      source.onChange((c) => seen.push(c.version));
      // The watcher's first stat is taken asynchronously; a write before it would be its baseline.
      await new Promise((r) => setTimeout(r, 200));
      writeFileSync(path, 'apiVersion: [');
      await waitFor(() => lines.some((l) => l.includes('config reload failed')));
      assert.equal(source.current().version, '1');
      writeFileSync(path, JSON.stringify(minimal({ version: '2', mesh: { mtlsMode: 'PERMISSIVE' } })));
      await waitFor(() => seen.includes('2'));
      assert.equal(source.current().mesh.mtlsMode, 'PERMISSIVE');
      source.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
