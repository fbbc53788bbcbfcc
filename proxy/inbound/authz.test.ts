import assert from 'node:assert/strict';
import { bodyText, testRequest, testResponse } from '../http/testdata/requests.js';
import { authzLayer, compileAuthorization, type Authorizer } from './authz.js';

const FRONTEND = 'spiffe://cluster.local/ns/shop/sa/frontend';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const BATCH = 'spiffe://cluster.local/ns/jobs/sa/batch';
const TD = 'cluster.local';

describe('authorization', () => {
  it('allows every caller while no policy selects the workload', () => {
    const a = compileAuthorization(undefined, TD);
    assert.equal(a.enforced, false);
    assert.equal(a.denial(BATCH, 8080), undefined);
    assert.equal(compileAuthorization([], TD).enforced, false);
  });

  it('allows by SPIFFE ID, namespace or service account; anyone else is denied with a reason', () => {
    const a = compileAuthorization(
      [{ name: 'payments-callers', rules: [{ identities: [FRONTEND] }, { namespaces: ['jobs'], ports: [9090] }, { serviceAccounts: ['shop/web'] }] }],
      TD,
    );
    assert.equal(a.denial(FRONTEND, 8080), undefined);
    assert.equal(a.denial(WEB, 8080), undefined);
    assert.equal(a.denial(BATCH, 9090), undefined);
    assert.match(a.denial(BATCH, 8080)!, /spiffe:\/\/cluster\.local\/ns\/jobs\/sa\/batch may not call port 8080: no rule of the authorization policies \(payments-callers\) allows it/);
    assert.match(a.denial('', 8080)!, /without a mesh identity/);
  });

  it('requires every list of a rule to match; an empty rule matches every mesh caller; a policy without rules allows nobody', () => {
    const both = compileAuthorization([{ name: 'p', rules: [{ namespaces: ['shop'], serviceAccounts: ['jobs/batch'] }] }], TD);
    assert.notEqual(both.denial(WEB, 80), undefined);
    assert.notEqual(both.denial(BATCH, 80), undefined);
    assert.equal(compileAuthorization([{ name: 'any', rules: [{}] }], TD).denial(BATCH, 80), undefined);
    assert.notEqual(compileAuthorization([{ name: 'none', rules: [] }], TD).denial(FRONTEND, 80), undefined);
  });

  it('matches namespaces and service accounts in its own trust domain only; a whole SPIFFE ID of another still matches', () => {
    const EVIL = 'spiffe://evil.example/ns/shop/sa/web';
    const a = compileAuthorization([{ name: 'shop', rules: [{ namespaces: ['shop'] }, { serviceAccounts: ['shop/web'], ports: [9090] }] }], TD);
    assert.equal(a.denial(WEB, 8080), undefined);
    assert.equal(a.denial(WEB, 9090), undefined);
    assert.match(a.denial(EVIL, 8080)!, /evil\.example\/ns\/shop\/sa\/web may not call port 8080/);
    assert.notEqual(a.denial(EVIL, 9090), undefined);
    assert.equal(compileAuthorization([{ name: 'partner', rules: [{ identities: [EVIL] }] }], TD).denial(EVIL, 8080), undefined);
    // The rule follows the workload's trust domain, not cluster.local.
    assert.notEqual(compileAuthorization([{ name: 'shop', rules: [{ namespaces: ['shop'] }] }], 'example.org').denial(WEB, 8080), undefined);
  });

  it('answers 403 with x-tsmesh-error: denied, counts it, and decides once per config', async () => {
    let checks = 0;
    let denials = 0;
    let current: Authorizer = compileAuthorization([{ name: 'only-frontend', rules: [{ identities: [FRONTEND] }] }], TD);
    const counting = (a: Authorizer): Authorizer => ({ enforced: a.enforced, denial: (p, port) => (checks++, a.denial(p, port)) });
    current = counting(current);
    const handler = authzLayer({ authorizer: () => current, peer: WEB, port: 8080, denied: () => denials++ })(() => Promise.resolve(testResponse(200)));
    for (let i = 0; i < 3; i++) {
      const res = await handler(testRequest());
      assert.equal(res.status, 403);
      assert.equal(res.headers['x-tsmesh-error'], 'denied');
      assert.match(await bodyText(res), /shop\/sa\/web may not call port 8080/);
    }
    assert.equal(denials, 3);
    assert.equal(checks, 1);
    current = counting(compileAuthorization([{ name: 'web-too', rules: [{ serviceAccounts: ['shop/web'] }] }], TD));
    assert.equal((await handler(testRequest())).status, 200);
    assert.equal(checks, 2);
  });
});
