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

    it('reads accessLog as a mode or a YAML mapping, the rest defaulted', function () {
      assert.deepEqual(parseMeshConfigMap(cm({ accessLog: 'errors' }), TD).mesh.accessLog, { mode: 'errors', sampling: 0.01, query: false });
      assert.deepEqual(parseMeshConfigMap(cm({ accessLog: 'mode: sampled\nsampling: 0.1\nquery: true\n' }), TD).mesh.accessLog, { mode: 'sampled', sampling: 0.1, query: true });
      assert.equal(parseMeshConfigMap(cm({}), TD).mesh.accessLog, undefined);
    });

    it('reads tracing as a YAML mapping, or off; a collector without a path gets /v1/traces', function () {
      assert.deepEqual(parseMeshConfigMap(cm({ tracing: 'export: true\ncollector: http://otel-collector.observability:4318\nsampling: 0.05\n' }), TD).mesh.tracing, {
        export: true,
        collector: 'http://otel-collector.observability:4318/v1/traces',
        sampling: 0.05,
      });
      assert.deepEqual(parseMeshConfigMap(cm({ tracing: '{"collector": "https://otel:4318/custom/path"}' }), TD).mesh.tracing, { export: false, sampling: 0.01, collector: 'https://otel:4318/custom/path' });
      assert.deepEqual(parseMeshConfigMap(cm({ tracing: 'off' }), TD).mesh.tracing, { export: false, sampling: 0.01 });
      assert.equal(parseMeshConfigMap(cm({}), TD).mesh.tracing, undefined);
    });

    it('reads egress as a YAML mapping of a mode and allow-list entries', function () {
      const egress = 'mode: registry-only\nallow:\n  - { name: api, hosts: [API.example.com, "*.example.org"], ports: [443] }\n  - { name: db, cidrs: [10.1.0.0/16], ports: [5432] }\n';
      assert.deepEqual(parseMeshConfigMap(cm({ egress }), TD).mesh.egress, {
        mode: 'registry-only',
        allow: [
          { name: 'api', hosts: ['api.example.com', '*.example.org'], ports: [443] },
          { name: 'db', cidrs: ['10.1.0.0/16'], ports: [5432] },
        ],
      });
      assert.equal(parseMeshConfigMap(cm({}), TD).mesh.egress, undefined);
    });

    const refused: [string, Record<string, string>, RegExp][] = [
      ['an unknown egress mode', { egress: 'mode: REGISTRY_ONLY' }, /^data\.egress\.mode: "REGISTRY_ONLY" is not one of allow-all, registry-only$/],
      ['an egress entry without hosts or cidrs', { egress: 'allow: [{ name: x, ports: [443] }]' }, /^data\.egress\.allow\[0\]: an egress entry needs hosts or cidrs$/],
      ['an egress host that is no name', { egress: 'allow: [{ name: x, hosts: ["http://api.example.com"] }]' }, /^data\.egress\.allow\[0\]\.hosts\[0\]: "http:\/\/api\.example\.com" is not a host name/],
      ['an egress CIDR with a bad prefix', { egress: 'allow: [{ name: x, cidrs: [10.0.0.0/33] }]' }, /^data\.egress\.allow\[0\]\.cidrs\[0\]: "10\.0\.0\.0\/33" has a bad prefix length; use 0-32$/],
      ['TLS origination without hosts', { egress: 'allow: [{ name: x, cidrs: [10.0.0.0/8], originateTls: {} }]' }, /^data\.egress\.allow\[0\]\.originateTls: TLS is originated with SNI/],
      ['two egress entries of one name', { egress: 'allow: [{ name: x, hosts: [a.com] }, { name: x, hosts: [b.com] }]' }, /^data\.egress\.allow\[1\]\.name: "x" names two entries$/],
      ['an unknown mtlsMode', { mtlsMode: 'strict' }, /^data\.mtlsMode: "strict" is not one of STRICT, PERMISSIVE$/],
      ['an unknown key', { mtlsmode: 'STRICT' }, /^data\.mtlsmode: unknown field; expected one of mtlsMode, defaultInboundPolicy, retryBudget, tracing, accessLog, egress, certificateTtl, trustDomain$/],
      ['an unknown default inbound policy', { defaultInboundPolicy: 'allow-all' }, /^data\.defaultInboundPolicy: "allow-all" is not one of all-authenticated, all-unauthenticated, deny$/],
      ['a retry budget out of range', { retryBudget: 'ratio: 2' }, /^data\.retryBudget\.ratio: 2 is not a number from 0 to 1$/],
      ['a retry budget that is not a mapping', { retryBudget: '[1, 2]' }, /^data\.retryBudget: expected an object/],
      ['a retry budget that is not YAML', { retryBudget: 'ratio: [' }, /^data\.retryBudget: not YAML/],
      ['span export without a collector', { tracing: 'on' }, /^data\.tracing\.collector: is needed when export is on: the URL of a collector's OTLP\/HTTP receiver, such as http:\/\/otel-collector\.observability:4318\/v1\/traces$/],
      ['a collector that is not an http URL', { tracing: 'export: true\ncollector: otel-collector:4317' }, /^data\.tracing\.collector: "otel-collector:4317" is not the http:\/\/ or https:\/\/ URL/],
      ['a sampling ratio above 1', { tracing: 'sampling: 10' }, /^data\.tracing\.sampling: 10 is not a number from 0 to 1$/],
      ['an unknown tracing field', { tracing: 'endpoint: http://otel:4318' }, /^data\.tracing\.endpoint: unknown field; expected one of export, collector, sampling$/],
      ['an unknown access log mode', { accessLog: 'verbose' }, /^data\.accessLog: "verbose" is not one of off, all, errors, sampled$/],
      ['an access log query that is not true or false', { accessLog: 'mode: all\nquery: yes-please' }, /^data\.accessLog\.query: expected true or false, found "yes-please"$/],
      ['an access log sampling ratio above 1', { accessLog: '{"mode": "sampled", "sampling": 5}' }, /^data\.accessLog\.sampling: 5 is not a number from 0 to 1$/],
      ['a tracing word other than on and off', { tracing: 'enabled' }, /^data\.tracing: "enabled" is not on, off or a mapping of export, collector, sampling$/],
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
