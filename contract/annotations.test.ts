import assert from 'node:assert/strict';
import { ValidationError } from '../lib/schema.js';
import { layerSettings, parsePortMtlsModes, scopedSettings } from './annotations.js';

describe('contract: inbound settings as annotations', () => {
  it('reads the three annotations and ignores others', () => {
    assert.deepEqual(
      scopedSettings({ 'tsmesh.io/mtls-mode': 'PERMISSIVE', 'tsmesh.io/default-inbound-policy': ' deny ', 'tsmesh.io/port-mtls-modes': '8080=STRICT, 9090 = PERMISSIVE,', 'tsmesh.io/inject': 'enabled' }),
      { mtlsMode: 'PERMISSIVE', defaultInboundPolicy: 'deny', portMtlsModes: { 8080: 'STRICT', 9090: 'PERMISSIVE' } },
    );
    assert.deepEqual(scopedSettings(undefined), {});
    assert.deepEqual(scopedSettings({ 'tsmesh.io/port-mtls-modes': '' }), {});
  });

  it('refuses what it cannot read, naming the annotation, the value and what it takes', () => {
    const refused = (a: Record<string, string>, message: string) => assert.throws(() => scopedSettings(a, ''), (e: unknown) => e instanceof ValidationError && e.message === message);
    refused({ 'tsmesh.io/mtls-mode': 'strict' }, 'tsmesh.io/mtls-mode: "strict" is not one of STRICT, PERMISSIVE');
    refused({ 'tsmesh.io/default-inbound-policy': 'allow' }, 'tsmesh.io/default-inbound-policy: "allow" is not one of all-authenticated, all-unauthenticated, deny');
    refused({ 'tsmesh.io/port-mtls-modes': '70000=STRICT' }, 'tsmesh.io/port-mtls-modes: "70000=STRICT" is not a port and an mTLS mode; expected comma-separated port=MODE pairs like 8080=PERMISSIVE,9090=STRICT');
    assert.throws(() => parsePortMtlsModes('80=STRICT,80=PERMISSIVE', 'p'), /p: port 80 is given twice/);
    assert.throws(() => parsePortMtlsModes('80=OFF', 'p'), /p: "OFF" is not one of STRICT, PERMISSIVE/);
  });

  it('lays the more specific over the more general, field by field and port by port', () => {
    assert.deepEqual(
      layerSettings({ mtlsMode: 'PERMISSIVE', defaultInboundPolicy: 'deny', portMtlsModes: { 80: 'STRICT', 81: 'STRICT' } }, { mtlsMode: 'STRICT', portMtlsModes: { 81: 'PERMISSIVE' } }),
      { mtlsMode: 'STRICT', defaultInboundPolicy: 'deny', portMtlsModes: { 80: 'STRICT', 81: 'PERMISSIVE' } },
    );
    assert.deepEqual(layerSettings(undefined, undefined), {});
  });
});
