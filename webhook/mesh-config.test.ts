import assert from 'node:assert/strict';
import { MeshConfigError } from './errors.js';
import { defaultMeshConfig, meshConfig, parseMeshConfigInput, TSMESH_VERSION } from './mesh-config.js';

describe('mesh config', function () {
  it('defaults to the image of this version and the proxy defaults of proxy/env.ts', function () {
    const c = defaultMeshConfig();
    assert.match(TSMESH_VERSION, /^\d+\.\d+\.\d+/);
    assert.equal(c.image, `ghcr.io/tsmesh/tsmesh:${TSMESH_VERSION}`);
    assert.equal(c.trustDomain, 'cluster.local');
    assert.equal(c.controlPlaneAddress, 'tsmesh-control-plane.tsmesh-system.svc:15012');
    assert.equal(c.imagePullPolicy, 'IfNotPresent');
  });

  it('lays settings over the defaults, ignoring undefined ones', function () {
    const c = meshConfig({ image: 'registry.example/tsmesh:dev', logLevel: undefined, proxyResources: { memoryLimit: '1Gi', cpuRequest: undefined } });
    assert.equal(c.image, 'registry.example/tsmesh:dev');
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.proxyResources, { cpuRequest: '100m', memoryRequest: '64Mi', memoryLimit: '1Gi' });
  });

  const bad: [string, Parameters<typeof meshConfig>[0], RegExp][] = [
    ['trust domain', { trustDomain: 'Not A Domain' }, /trustDomain: "Not A Domain" is not valid/],
    ['address', { controlPlaneAddress: 'tsmesh-control-plane' }, /controlPlaneAddress: .* expected host:port/],
    ['image', { image: 'has space' }, /image: "has space" is not valid/],
    ['pull policy', { imagePullPolicy: 'Sometimes' as never }, /expected Always, IfNotPresent, Never/],
    ['log level', { logLevel: 'loud' as never }, /logLevel: "loud" is not valid; expected error, warn, info, debug/],
    ['quantity', { proxyResources: { cpuLimit: 'two' } }, /proxyResources\.cpuLimit: "two" is not valid; expected a Kubernetes quantity/],
    ['request above limit', { proxyResources: { memoryRequest: '1Gi' } }, /memoryRequest: "1Gi" is not valid; it is above proxyResources\.memoryLimit 256Mi/],
  ];
  for (const [what, input, message] of bad) {
    it(`refuses a bad ${what}, naming the setting`, function () {
      assert.throws(() => meshConfig(input), (e: unknown) => e instanceof MeshConfigError && message.test(e.message));
    });
  }

  it('reads a config document: known keys only, strings only', function () {
    assert.deepEqual(parseMeshConfigInput({ image: 'x:1', proxyResources: { cpuRequest: '1' } }), { image: 'x:1', proxyResources: { cpuRequest: '1' } });
    assert.deepEqual(parseMeshConfigInput(null), {});
    assert.throws(() => parseMeshConfigInput(['a'], 'mesh.yaml'), /mesh\.yaml: expected a map of settings/);
    assert.throws(() => parseMeshConfigInput({ imagePullPolicy: 1 }), /imagePullPolicy must be a string/);
    assert.throws(() => parseMeshConfigInput({ proxyResources: { memory: '1Gi' } }), /unknown setting proxyResources\.memory; known: cpuRequest/);
    assert.throws(() => parseMeshConfigInput({ proxyResources: { cpuRequest: 1 } }), /proxyResources\.cpuRequest must be a string/);
  });
});
