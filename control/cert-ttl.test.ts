import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { CLOCK_SKEW_BACKDATE_SECONDS } from '../ca/authority.js';
import { buildCsrPem } from '../ca/csr.js';
import { caFromRoot, newKey, newRootCa, WEB } from '../ca/testdata/fixtures.js';
import { createLogger } from '../lib/log.js';
import { CONFIG_MAP_TTL_ORIGIN, certificateTtlInForce, followMeshCertificateTtl } from './cert-ttl.js';
import type { MeshConfig } from './sources/kubernetes-mesh-config.js';

const mesh = (certificateTtlSeconds?: number): MeshConfig => ({
  mesh: { trustDomain: 'cluster.local', mtlsMode: 'STRICT', retryBudget: { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' } },
  ...(certificateTtlSeconds === undefined ? {} : { certificateTtlSeconds }),
});

describe('certificate lifetime: ConfigMap tsmesh-config over --cert-ttl', () => {
  it('the ConfigMap value wins while it is set; otherwise the default and its origin', () => {
    const flag = { seconds: 1800, from: '--cert-ttl' };
    assert.deepEqual(certificateTtlInForce(flag, undefined), flag);
    assert.deepEqual(certificateTtlInForce(flag, 7200), { seconds: 7200, from: CONFIG_MAP_TTL_ORIGIN });
    assert.deepEqual(certificateTtlInForce(flag, 600), { seconds: 600, from: CONFIG_MAP_TTL_ORIGIN });
  });

  it('followMeshCertificateTtl applies each accepted setting to the certificates issued next, and logs each change once', async () => {
    const { root } = await newRootCa();
    const ca = caFromRoot(root, { ttlSeconds: 1800 });
    const listeners = new Set<(c: MeshConfig) => void>();
    const lines: { level: string; msg: string; ttl?: string; from?: string }[] = [];
    const log = createLogger('test', 'debug', (l) => lines.push(JSON.parse(l) as (typeof lines)[number]));
    const stop = followMeshCertificateTtl({
      authority: ca,
      source: { onMeshConfig: (l) => (listeners.add(l), () => listeners.delete(l)) },
      defaultFrom: '--cert-ttl',
      log,
    });
    const publish = (c: MeshConfig): void => listeners.forEach((l) => l(c));
    const lifetime = (): number => {
      const x = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
      return Math.round((new Date(x.validTo).getTime() - new Date(x.validFrom).getTime()) / 1000) - CLOCK_SKEW_BACKDATE_SECONDS;
    };

    publish(mesh());
    assert.equal(lifetime(), 1800);
    assert.equal(lines.length, 0, 'the default in force already: nothing to say');

    publish(mesh(7200));
    assert.equal(ca.ttlSeconds, 7200);
    assert.ok(Math.abs(lifetime() - 7200) <= 1);
    publish(mesh(7200));
    assert.deepEqual(lines.map((l) => [l.level, l.ttl, l.from]), [['info', '2h', CONFIG_MAP_TTL_ORIGIN]]);

    publish(mesh());
    assert.ok(Math.abs(lifetime() - 1800) <= 1, 'the key removed: back to --cert-ttl');
    assert.deepEqual(lines.at(-1) && [lines.at(-1)!.ttl, lines.at(-1)!.from], ['30m', '--cert-ttl']);

    stop();
    publish(mesh(600));
    assert.equal(ca.ttlSeconds, 1800, 'no longer following');
  });
});
