import assert from 'node:assert/strict';
import { InjectionRefused } from './errors.js';
import { meshConfig } from './mesh-config.js';
import { portListText, readOverrides } from './overrides.js';
import { parseQuantity } from './quantity.js';

const mesh = meshConfig();

function refusal(annotations: Record<string, string>): string {
  try {
    readOverrides(annotations, mesh);
  } catch (e) {
    assert.ok(e instanceof InjectionRefused);
    assert.equal(e.code, 'bad-override');
    return e.message;
  }
  return assert.fail('not refused');
}

describe('readOverrides', function () {
  it('reads every override, normalising lists the way tsmesh init reads them', function () {
    const o = readOverrides(
      {
        'tsmesh.io/skip-inbound-ports': ' 8081, 9000-9010,8081 ',
        'tsmesh.io/skip-outbound-ports': '25:26',
        'tsmesh.io/skip-outbound-cidrs': '10.1.2.3/8,fd00::1/8',
        'tsmesh.io/opaque-ports': '5432',
        'tsmesh.io/proxy-cpu-request': '0.25',
        'tsmesh.io/proxy-memory-limit': '1e9',
        'tsmesh.io/proxy-log-level': 'warn',
      },
      mesh,
    );
    assert.equal(portListText(o.skipInboundPorts), '8081,9000-9010');
    assert.equal(portListText(o.skipOutboundPorts), '25-26');
    assert.deepEqual(o.skipOutboundCidrs.map((c) => `${c.address}/${c.prefix}`), ['10.0.0.0/8', 'fd00::/8']);
    assert.equal(portListText(o.opaquePorts), '5432');
    assert.deepEqual(o.resources, { cpuRequest: '0.25', memoryRequest: '64Mi', memoryLimit: '1e9' });
    assert.equal(o.logLevel, 'warn');
  });

  it('falls back to the mesh defaults', function () {
    const o = readOverrides({}, meshConfig({ logLevel: 'debug', proxyResources: { cpuLimit: '1' } }));
    assert.equal(o.logLevel, 'debug');
    assert.deepEqual(o.resources, { cpuRequest: '100m', memoryRequest: '64Mi', memoryLimit: '256Mi', cpuLimit: '1' });
    assert.deepEqual([o.skipInboundPorts, o.skipOutboundPorts, o.skipOutboundCidrs, o.opaquePorts], [[], [], [], []]);
  });

  it('names the annotation, the value and the expected form of a bad one', function () {
    assert.match(refusal({ 'tsmesh.io/skip-inbound-ports': '80,http' }), /^annotation tsmesh\.io\/skip-inbound-ports: "80,http" is not a port list \("http" is not a port\); expected comma-separated/);
    assert.match(refusal({ 'tsmesh.io/skip-inbound-ports': '9000-8000' }), /9000 is above 8000/);
    assert.match(refusal({ 'tsmesh.io/skip-outbound-cidrs': 'example.com' }), /"example\.com" is not an address list \("example\.com" is not an address or CIDR\); expected comma-separated addresses/);
    assert.match(refusal({ 'tsmesh.io/proxy-memory-limit': '32Mi' }), /tsmesh\.io\/proxy-memory-limit: "32Mi" makes the proxy's memory request \(64Mi\) larger than its limit \(32Mi\)/);
  });

  it('refuses inbound settings the control plane could not read, and lets good ones through', function () {
    assert.equal(refusal({ 'tsmesh.io/mtls-mode': 'strict' }), 'annotation tsmesh.io/mtls-mode: "strict" is not one of STRICT, PERMISSIVE. Fix the annotation or remove it');
    assert.match(refusal({ 'tsmesh.io/default-inbound-policy': 'none' }), /^annotation tsmesh\.io\/default-inbound-policy: "none" is not one of all-authenticated, all-unauthenticated, deny/);
    assert.match(refusal({ 'tsmesh.io/port-mtls-modes': '8080:PERMISSIVE' }), /^annotation tsmesh\.io\/port-mtls-modes: "8080:PERMISSIVE" is not a port and an mTLS mode; expected comma-separated port=MODE pairs/);
    assert.equal(refusal({ 'tsmesh.io/tracing': 'sampling=5' }), 'annotation tsmesh.io/tracing.sampling: 5 is not a number from 0 to 1. Fix the annotation or remove it');
    readOverrides({ 'tsmesh.io/mtls-mode': 'PERMISSIVE', 'tsmesh.io/default-inbound-policy': 'deny', 'tsmesh.io/port-mtls-modes': '8080=STRICT' }, mesh);
  });
});

describe('parseQuantity', function () {
  it('reads Kubernetes quantities in base units', function () {
    assert.equal(parseQuantity('100m'), 0.1);
    assert.equal(parseQuantity('64Mi'), 64 * 2 ** 20);
    assert.equal(parseQuantity('1G'), 1e9);
    assert.equal(parseQuantity('2e3'), 2000);
    assert.equal(parseQuantity('.5'), 0.5);
  });
  it('refuses what is not one', function () {
    for (const bad of ['', 'lots', '64MB', '1Gi1', '-1Gi', '1 Gi', 'Mi']) assert.equal(parseQuantity(bad), undefined, bad);
  });
});
