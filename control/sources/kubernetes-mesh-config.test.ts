import assert from 'node:assert/strict';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { ValidationError } from '../../lib/schema.js';
import { DEFAULT_RETRY_BUDGET } from '../../contract/proxy-config.js';
import { parseMeshConfigMap } from './kubernetes-mesh-config.js';

const TD = 'cluster.local';

describe('control/sources/kubernetes-mesh-config', function () {
  describe('parseMeshConfigMap (ConfigMap tsmesh-config)', function () {
    const cm = (data: Record<string, string>): V1ConfigMap => ({ metadata: { name: 'tsmesh-config', namespace: 'tsmesh-system' }, data });

    it('defaults when the ConfigMap is absent or empty', function () {
      const want = { mesh: { trustDomain: TD, mtlsMode: 'STRICT', retryBudget: DEFAULT_RETRY_BUDGET } };
      assert.deepEqual(parseMeshConfigMap(undefined, TD), want);
      assert.deepEqual(parseMeshConfigMap(cm({}), TD), want);
    });

    it('reads mtlsMode, retryBudget (YAML) and certificateTtl; trustDomain only when it matches', function () {
      const out = parseMeshConfigMap(cm({ mtlsMode: 'PERMISSIVE', retryBudget: 'ratio: 0.1\nminRetriesPerSecond: 5\nttl: 30s\n', certificateTtl: '2h', trustDomain: 'example.org' }), 'example.org');
      assert.deepEqual(out, { mesh: { trustDomain: 'example.org', mtlsMode: 'PERMISSIVE', retryBudget: { ratio: 0.1, minRetriesPerSecond: 5, ttl: '30s' } }, certificateTtlSeconds: 7200 });
      assert.deepEqual(parseMeshConfigMap(cm({ retryBudget: '{"ratio": 0.5}' }), TD).mesh.retryBudget, { ...DEFAULT_RETRY_BUDGET, ratio: 0.5 });
      assert.equal(parseMeshConfigMap(cm({ defaultInboundPolicy: 'deny' }), TD).mesh.defaultInboundPolicy, 'deny');
    });

    const refused: [string, Record<string, string>, RegExp][] = [
      ['an unknown mtlsMode', { mtlsMode: 'strict' }, /^data\.mtlsMode: "strict" is not one of STRICT, PERMISSIVE$/],
      ['an unknown key', { mtlsmode: 'STRICT' }, /^data\.mtlsmode: unknown field; expected one of mtlsMode, defaultInboundPolicy, retryBudget, certificateTtl, trustDomain$/],
      ['an unknown default inbound policy', { defaultInboundPolicy: 'allow-all' }, /^data\.defaultInboundPolicy: "allow-all" is not one of all-authenticated, all-unauthenticated, deny$/],
      ['a retry budget out of range', { retryBudget: 'ratio: 2' }, /^data\.retryBudget\.ratio: 2 is not a number from 0 to 1$/],
      ['a retry budget that is not a mapping', { retryBudget: '[1, 2]' }, /^data\.retryBudget: expected an object/],
      ['a retry budget that is not YAML', { retryBudget: 'ratio: [' }, /^data\.retryBudget: not YAML/],
      ['a certificate TTL without a unit', { certificateTtl: '3600' }, /^data\.certificateTtl: .*not a duration/],
      ['a certificate TTL under a minute', { certificateTtl: '30s' }, /^data\.certificateTtl: 30s is outside 60s to 30d$/],
      ['another trust domain', { trustDomain: 'example.org' }, /^data\.trustDomain: "example\.org" differs from the control plane's trust domain "cluster\.local"/],
    ];
    for (const [what, data, message] of refused) {
      it(`refuses ${what}, naming the key`, function () {
        assert.throws(() => parseMeshConfigMap(cm(data), TD), (e: unknown) => e instanceof ValidationError && message.test(e.message));
      });
    }
  });
});
