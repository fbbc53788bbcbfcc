// The decision of a root rotation (pure) and its steps as file changes.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { CA_FILES, issuingRoot, parseCaFiles, type CaFiles } from './material.js';
import { createIntermediateCa, createRootCa } from './root.js';
import { finishRotation, startRotation } from './rotation-files.js';
import { planRotation, type ProxyTrustView, type RotationInput } from './rotation.js';

const OLD = 'AA:01';
const NEW = 'BB:02';
const base: RotationInput = { currentRoot: OLD, nextRoot: NEW, signing: 'current', proxies: [], now: 1000 };
const proxy = (name: string, bundle: string[] | undefined, certRoot: string | undefined): ProxyTrustView => ({
  proxy: name,
  ...(bundle ? { bundle } : {}),
  ...(certRoot ? { certRoot } : {}),
});

describe('planRotation', () => {
  it('is steady outside a rotation: the current material signs, nothing is retired', () => {
    const { nextRoot: _n, ...steady } = base;
    assert.deepEqual(planRotation({ ...steady, proxies: [proxy('a', [OLD], OLD)] }), { phase: 'steady', signWith: 'current', retiredRoots: [], waitingFor: [] });
  });

  it('keeps the old material signing until every proxy acknowledged a bundle with the new root', () => {
    const plan = planRotation({ ...base, proxies: [proxy('a', [OLD, NEW], OLD), proxy('b', [OLD], OLD), proxy('c', undefined, OLD)] });
    assert.equal(plan.phase, 'trusting-new');
    assert.equal(plan.signWith, 'current');
    assert.deepEqual(plan.retiredRoots, []);
    assert.deepEqual(plan.waitingFor, ['b: has not acknowledged a config that trusts the new root', 'c: has not acknowledged a config that trusts the new root']);
  });

  it('waits for the writers and the overlap too, and says so', () => {
    const plan = planRotation({ ...base, proxies: [proxy('a', [OLD, NEW], OLD)], writers: 'trust-bundle ConfigMaps: 2 namespaces left', overlapEndsAt: 5000 });
    assert.equal(plan.phase, 'trusting-new');
    assert.equal(plan.waitingFor.length, 2);
    assert.match(plan.waitingFor[0]!, /ConfigMaps/);
    assert.match(plan.waitingFor[1]!, /overlap of both roots until 1970-01-01T00:00:05.000Z/);
    assert.equal(planRotation({ ...base, proxies: [proxy('a', [OLD, NEW], OLD)], overlapEndsAt: 5000, now: 5000 }).signWith, 'next');
  });

  it('signs with the new material once every proxy trusts both, retires the old root, and waits for new certificates', () => {
    const plan = planRotation({ ...base, proxies: [proxy('a', [OLD, NEW], OLD), proxy('b', [OLD, NEW], NEW)] });
    assert.deepEqual(plan, { phase: 'issuing-new', signWith: 'next', retiredRoots: [OLD], waitingFor: ['a: has not acknowledged a certificate that chains to the new root'] });
  });

  it('is ready to retire only when every proxy on the stream holds a certificate of the new root', () => {
    const signing = { ...base, signing: 'next' as const };
    assert.equal(planRotation({ ...signing, proxies: [proxy('a', [OLD, NEW], NEW), proxy('b', [OLD, NEW], undefined)] }).phase, 'issuing-new');
    assert.deepEqual(planRotation({ ...signing, proxies: [proxy('a', [OLD, NEW], NEW), proxy('b', [OLD, NEW], NEW)] }), {
      phase: 'ready-to-retire',
      signWith: 'next',
      retiredRoots: [OLD],
      waitingFor: [],
    });
    // With no proxy on the stream nothing depends on the old root here.
    assert.equal(planRotation({ ...signing, proxies: [] }).phase, 'ready-to-retire');
  });

  it('does not go back once the new material signs, even when a proxy reconnects without acknowledgements', () => {
    const plan = planRotation({ ...base, signing: 'next', proxies: [proxy('a', undefined, OLD)] });
    assert.equal(plan.signWith, 'next');
    assert.equal(plan.phase, 'issuing-new');
  });

  it('opens no gate while the proxies of a control plane that just started may still be reconnecting', () => {
    const fresh = { ...base, reconnectingUntil: 4000 };
    const trusting = planRotation({ ...fresh, proxies: [] });
    assert.equal(trusting.signWith, 'current');
    assert.match(trusting.waitingFor[0]!, /the proxies to reconnect to this control plane, which started lately \(until 1970-01-01T00:00:04.000Z\)/);
    assert.equal(planRotation({ ...fresh, signing: 'next', proxies: [] }).phase, 'issuing-new');
    assert.equal(planRotation({ ...fresh, signing: 'next', proxies: [], now: 4000 }).phase, 'ready-to-retire');
  });

  it('names ten proxies and counts the rest', () => {
    const many = Array.from({ length: 25 }, (_, i) => proxy(`p${i}`, [OLD], OLD));
    const plan = planRotation({ ...base, proxies: many });
    assert.equal(plan.waitingFor.length, 11);
    assert.match(plan.waitingFor[10]!, /^15 more proxies/);
  });
});

describe('rotation steps on CA files', function () {
  this.timeout(20_000);

  for (const layout of ['root signs', 'intermediate signs'] as const) {
    it(`start then finish, ${layout}: the layout is kept, the old root leaves only at finish`, async () => {
      const root = await createRootCa('cluster.local');
      let files: CaFiles = { [CA_FILES.rootCert]: root.certPem, [CA_FILES.rootKey]: root.keyPem };
      if (layout === 'intermediate signs') {
        const ica = await createIntermediateCa(root, 'cluster.local');
        files = { [CA_FILES.rootCert]: root.certPem, [CA_FILES.caCert]: ica.certPem, [CA_FILES.caKey]: ica.keyPem };
      }
      const oldRoot = new X509Certificate(root.certPem).fingerprint256;
      const start = await startRotation(files, { trustDomain: 'cluster.local', overlapSeconds: 30, now: new Date('2026-01-01T00:00:00Z') });
      const newRoot = new X509Certificate(start.newRoot!.certPem).fingerprint256;
      const during = parseCaFiles(start.files, 'during');
      assert.deepEqual(during.trustBundle.fingerprints(), [oldRoot, newRoot]);
      assert.equal(issuingRoot(during.current), oldRoot, 'the old material still signs');
      assert.equal(issuingRoot(during.next!), newRoot);
      assert.deepEqual(during.rotation, { startedAt: '2026-01-01T00:00:00.000Z', overlapSeconds: 30 });
      assert.equal(start.files[CA_FILES.nextCaCert] !== undefined, layout === 'intermediate signs');
      await assert.rejects(startRotation(start.files, { trustDomain: 'cluster.local' }), /already in progress/);

      const finish = finishRotation(start.files);
      const after = parseCaFiles(finish.files, 'after');
      assert.deepEqual(after.trustBundle.fingerprints(), [newRoot]);
      assert.equal(issuingRoot(after.current), newRoot);
      assert.equal(after.next, undefined);
      assert.equal(after.rotation, undefined);
      assert.equal(finish.files[CA_FILES.caCert] !== undefined, layout === 'intermediate signs');
      assert.throws(() => finishRotation(finish.files), /no root rotation is in progress/);
    });
  }

  it('refuses material that does not hold together, saying what is wrong', async () => {
    const a = await createRootCa('cluster.local');
    const b = await createRootCa('cluster.local');
    assert.throws(() => parseCaFiles({ [CA_FILES.rootCert]: a.certPem, [CA_FILES.rootKey]: b.keyPem }, 'dir'), /root-key.pem belongs to none of the roots/);
    assert.throws(() => parseCaFiles({ [CA_FILES.rootCert]: a.certPem, [CA_FILES.rootKey]: a.keyPem, [CA_FILES.nextRootKey]: b.keyPem }, 'dir'), /next-root-key.pem belongs to none/);
    assert.throws(() => parseCaFiles({ [CA_FILES.rootCert]: a.certPem, [CA_FILES.rootKey]: a.keyPem, [CA_FILES.rotation]: '{"startedAt":1}' }, 'dir'), /rotation.json needs startedAt/);
  });
});
