import assert from 'node:assert/strict';
import { ValidationError } from '../lib/schema.js';
import { layerSettings, mergeEgressAllow, parseAccessLogAnnotation, parsePortMtlsModes, parseTracingAnnotation, scopedSettings } from './annotations.js';

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

  it('reads tsmesh.io/access-log: a mode, sampling and query pairs, and lays it field by field', () => {
    assert.deepEqual(scopedSettings({ 'tsmesh.io/access-log': 'errors' }), { accessLog: { mode: 'errors' } });
    assert.deepEqual(parseAccessLogAnnotation('sampled, sampling=0.05, query=on', 'p'), { mode: 'sampled', sampling: 0.05, query: true });
    assert.deepEqual(layerSettings({ accessLog: { mode: 'all', query: true } }, { accessLog: { mode: 'off' } }), { accessLog: { mode: 'off', query: true } });
    const refused = (value: string, message: string) => assert.throws(() => scopedSettings({ 'tsmesh.io/access-log': value }, ''), (e: unknown) => e instanceof ValidationError && e.message === message);
    refused('verbose', 'tsmesh.io/access-log: "verbose" is not an access log setting; expected off, all, errors or sampled, and comma-separated sampling=0-1, query=on|off, like "sampled,sampling=0.05"');
    refused('mode=loud', 'tsmesh.io/access-log.mode: "loud" is not one of off, all, errors, sampled');
    refused('all,query=maybe', 'tsmesh.io/access-log: "query=maybe" is not on or off');
    refused('sampled,sampling=-1', 'tsmesh.io/access-log.sampling: -1 is not a number from 0 to 1');
  });

  it('reads tsmesh.io/tracing: on, off, or export, sampling and collector pairs, and lays it field by field', () => {
    assert.deepEqual(scopedSettings({ 'tsmesh.io/tracing': 'off' }), { tracing: { export: false } });
    assert.deepEqual(scopedSettings({ 'tsmesh.io/tracing': 'on, sampling=0.25' }), { tracing: { export: true, sampling: 0.25 } });
    assert.deepEqual(parseTracingAnnotation('collector=http://otel.observability:4318,export=true', 'p'), { collector: 'http://otel.observability:4318/v1/traces', export: true });
    assert.deepEqual(scopedSettings({ 'tsmesh.io/tracing': ' ' }), {});
    assert.deepEqual(layerSettings({ tracing: { export: true, sampling: 0.5 } }, { tracing: { sampling: 1 } }), { tracing: { export: true, sampling: 1 } });
    const refused = (value: string, message: string) => assert.throws(() => scopedSettings({ 'tsmesh.io/tracing': value }, ''), (e: unknown) => e instanceof ValidationError && e.message === message);
    refused('yes', 'tsmesh.io/tracing: "yes" is not a tracing setting; expected on, off, or comma-separated export=on|off, sampling=0-1, collector=URL, like "on,sampling=0.1"');
    refused('sampling=2', 'tsmesh.io/tracing.sampling: 2 is not a number from 0 to 1');
    refused('sampling=1%', 'tsmesh.io/tracing.sampling: NaN is not a number from 0 to 1');
    refused('on,export=off', 'tsmesh.io/tracing: "export=off": export is given twice');
    refused('sampling=0.1,sampling=0.2', 'tsmesh.io/tracing: "sampling=0.2": sampling is given twice');
    refused('collector=otel:4318', 'tsmesh.io/tracing.collector: "otel:4318" is not the http:// or https:// URL of a collector\'s OTLP/HTTP receiver, such as http://otel-collector.observability:4318/v1/traces');
  });

  it('reads tsmesh.io/egress-mode and tsmesh.io/egress-allow; entries add up across scopes, a name of the specific one replacing the general\'s', () => {
    assert.deepEqual(scopedSettings({ 'tsmesh.io/egress-mode': 'registry-only', 'tsmesh.io/egress-allow': 'API.example.com:443, *.example.org, 10.1.0.0/16:5432, [fd00::/8]:443' }), {
      egressMode: 'registry-only',
      egressAllow: [
        { name: 'API.example.com:443', hosts: ['api.example.com'], ports: [443] },
        { name: '*.example.org', hosts: ['*.example.org'] },
        { name: '10.1.0.0/16:5432', cidrs: ['10.1.0.0/16'], ports: [5432] },
        { name: '[fd00::/8]:443', cidrs: ['fd00::/8'], ports: [443] },
      ],
    });
    const a = { name: 'a', hosts: ['a.com'] };
    const b = { name: 'b', hosts: ['b.com'] };
    const b2 = { name: 'b', hosts: ['b2.com'] };
    assert.deepEqual(layerSettings({ egressMode: 'registry-only', egressAllow: [a, b] }, { egressAllow: [b2] }), { egressMode: 'registry-only', egressAllow: [a, b2] });
    assert.deepEqual(mergeEgressAllow([a], [b]), [a, b]);
    const refused = (a: Record<string, string>, message: RegExp) => assert.throws(() => scopedSettings(a, ''), (e: unknown) => e instanceof ValidationError && message.test(e.message));
    refused({ 'tsmesh.io/egress-mode': 'REGISTRY_ONLY' }, /^tsmesh\.io\/egress-mode: "REGISTRY_ONLY" is not one of allow-all, registry-only$/);
    refused({ 'tsmesh.io/egress-allow': 'api.example.com:99999' }, /^tsmesh\.io\/egress-allow: "api\.example\.com:99999" has no port 1-65535; expected comma-separated host\[:port\]/);
    refused({ 'tsmesh.io/egress-allow': 'https://api.example.com' }, /^tsmesh\.io\/egress-allow: "https:\/\/api\.example\.com": .*is not a host name/);
    refused({ 'tsmesh.io/egress-allow': '10.0.0.0/40' }, /^tsmesh\.io\/egress-allow: "10\.0\.0\.0\/40": .*bad prefix length/);
    refused({ 'tsmesh.io/egress-allow': 'a.com,a.com' }, /"a\.com" is given twice/);
  });
});
