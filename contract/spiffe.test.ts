import assert from 'node:assert/strict';
import { SpiffeIdError, formatSpiffeId, parseSpiffeId, parseWorkloadSpiffeId, workloadSpiffeId, type SpiffeRule } from './spiffe.js';

describe('SPIFFE IDs', () => {
  it('parses trust domain and path', () => {
    assert.deepEqual(parseSpiffeId('spiffe://cluster.local/ns/default/sa/web'), { trustDomain: 'cluster.local', path: '/ns/default/sa/web' });
    assert.deepEqual(parseSpiffeId('spiffe://example.org'), { trustDomain: 'example.org', path: '' });
    assert.deepEqual(parseSpiffeId('spiffe://a_b-c.9/Path.With-Mixed_Case'), { trustDomain: 'a_b-c.9', path: '/Path.With-Mixed_Case' });
  });

  it('formats and round-trips workload IDs', () => {
    const id = workloadSpiffeId('cluster.local', 'payments', 'api');
    assert.equal(id, 'spiffe://cluster.local/ns/payments/sa/api');
    assert.equal(formatSpiffeId(parseSpiffeId(id)), id);
    assert.deepEqual(parseWorkloadSpiffeId(id), { trustDomain: 'cluster.local', namespace: 'payments', serviceAccount: 'api' });
    assert.equal(parseWorkloadSpiffeId('spiffe://cluster.local/other/shape'), undefined);
  });

  const rejections: [string, SpiffeRule][] = [
    ['', 'empty'],
    ['http://cluster.local/ns/a', 'scheme'],
    ['SPIFFE://cluster.local/ns/a', 'scheme'],
    ['spiffe:/cluster.local', 'scheme'],
    ['spiffe://', 'trust-domain-empty'],
    ['spiffe:///ns/a', 'trust-domain-empty'],
    ['spiffe://Cluster.Local/ns/a', 'trust-domain-chars'],
    ['spiffe://clu ster/ns/a', 'trust-domain-chars'],
    ['spiffe://cluster%2elocal/ns/a', 'trust-domain-chars'],
    ['spiffe://user@cluster.local/ns/a', 'no-userinfo-or-port'],
    ['spiffe://cluster.local:8443/ns/a', 'no-userinfo-or-port'],
    ['spiffe://cluster.local/ns/a?x=1', 'no-query-or-fragment'],
    ['spiffe://cluster.local/ns/a#frag', 'no-query-or-fragment'],
    ['spiffe://cluster.local/ns//a', 'path-empty-segment'],
    ['spiffe://cluster.local//', 'path-trailing-slash'],
    ['spiffe://cluster.local/ns/a/', 'path-trailing-slash'],
    ['spiffe://cluster.local/', 'path-trailing-slash'],
    ['spiffe://cluster.local/ns/./a', 'path-dot-segment'],
    ['spiffe://cluster.local/ns/../a', 'path-dot-segment'],
    ['spiffe://cluster.local/ns/a%20b', 'path-chars'],
    ['spiffe://cluster.local/ns/a b', 'path-chars'],
    ['spiffe://cluster.local/ns/ä', 'path-chars'],
    [`spiffe://${'a'.repeat(256)}/x`, 'trust-domain-too-long'],
    [`spiffe://cluster.local/${'a'.repeat(2048)}`, 'too-long'],
  ];
  for (const [input, rule] of rejections) {
    it(`rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + '...' : input)} by rule ${rule}`, () => {
      assert.throws(
        () => parseSpiffeId(input),
        (e: unknown) => e instanceof SpiffeIdError && e.rule === rule && e.message.includes(`[rule: ${rule}]`),
      );
    });
  }

  it('accepts the longest legal trust domain and ID', () => {
    const td = 'a'.repeat(255);
    assert.equal(parseSpiffeId(`spiffe://${td}`).trustDomain, td);
    const id = `spiffe://x/${'b'.repeat(2048 - 'spiffe://x/'.length)}`;
    assert.equal(id.length, 2048);
    assert.equal(parseSpiffeId(id).trustDomain, 'x');
  });
});
