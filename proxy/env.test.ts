import assert from 'node:assert/strict';
import { ProxyEnvError, readProxySettings } from './env.js';

describe('proxy settings from the environment', () => {
  it('uses the defaults of DESIGN.md when nothing is set', () => {
    const s = readProxySettings({});
    assert.deepEqual([s.outboundPort, s.inboundPort, s.adminPort], [15001, 15006, 15020]);
    assert.equal(s.controlPlaneAddress, 'tsmesh-control-plane.tsmesh-system.svc:15012');
    assert.equal(s.trustDomain, 'cluster.local');
    assert.equal(s.requestBodyTimeout, '60s');
    assert.equal(s.responseHeadTimeout, '60s');
  });
  it('reads the response head timeout as a Go duration, "0s" for none', () => {
    assert.equal(readProxySettings({ TSMESH_RESPONSE_HEAD_TIMEOUT: '2m' }).responseHeadTimeout, '2m');
    assert.equal(readProxySettings({ TSMESH_RESPONSE_HEAD_TIMEOUT: '0s' }).responseHeadTimeout, '0s');
  });
  it('reads the request body timeout as a Go duration', () => {
    assert.equal(readProxySettings({ TSMESH_REQUEST_BODY_TIMEOUT: '15s' }).requestBodyTimeout, '15s');
  });
  it('reads opaque ports as the webhook writes them, ranges included', () => {
    assert.deepEqual(readProxySettings({ TSMESH_OPAQUE_PORTS: '5000,6000-6002' }).opaquePorts, [5000, 6000, 6001, 6002]);
  });
  it('names the variable and the value when one is bad', () => {
    assert.throws(() => readProxySettings({ TSMESH_ADMIN_PORT: '70000' }), (e: unknown) => e instanceof ProxyEnvError && /TSMESH_ADMIN_PORT="70000" is not a port/.test(e.message));
    assert.throws(() => readProxySettings({ TSMESH_OPAQUE_PORTS: '3306,abc' }), (e: unknown) => e instanceof ProxyEnvError && /TSMESH_OPAQUE_PORTS: "abc" is not a port/.test(e.message));
  });
});
