import assert from 'node:assert/strict';
import type { AuthorizationPolicySpec, InboundConfig, MeshSettings } from '../../contract/proxy-config.js';
import { bodyText, testRequest, testResponse } from '../http/testdata/requests.js';
import type { ProxyRequest } from '../http/types.js';
import { authzLayer, compileAuthorization, defaultInboundPolicy, inboundMtlsMode, type Authorizer, type Finding } from './authz.js';

const FRONTEND = 'spiffe://cluster.local/ns/shop/sa/frontend';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const BATCH = 'spiffe://cluster.local/ns/jobs/sa/batch';
const TD = 'cluster.local';
const MESH: MeshSettings = { trustDomain: TD, mtlsMode: 'STRICT', retryBudget: { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' } };

const compile = (authorization: AuthorizationPolicySpec[] | undefined, inbound: InboundConfig = {}, mesh: Partial<MeshSettings> = {}, td = TD): Authorizer =>
  compileAuthorization({ mesh: { ...MESH, ...mesh }, inbound: { ...inbound, ...(authorization ? { authorization } : {}) } }, td);

/** The denial of an opaque TCP connection (an audit is no denial). */
const tcpDenial = (a: Authorizer, peer: string, port: number): string | undefined => {
  const f = a.connection(peer, port).tcp;
  return f?.kind === 'deny' ? f.reason : undefined;
};
const req = (method: string, path: string, headers: Record<string, string> = {}): ProxyRequest => testRequest({ method, path, headers: { host: 'api.shop', ...headers } });
/** What an HTTP request gets: "allow", "audit <policy>/<rule>" or "deny <policy>/<rule>". */
const http = (a: Authorizer, peer: string, port: number, r: ProxyRequest): string => {
  const f: Finding | undefined = a.connection(peer, port).request(r);
  return f === undefined ? 'allow' : `${f.kind} ${f.policy}/${f.rule}`;
};

describe('authorization', () => {
  it('allows every mesh caller while no policy selects the workload (default all-authenticated)', () => {
    const a = compile(undefined);
    assert.equal(tcpDenial(a, BATCH, 8080), undefined);
    assert.equal(http(a, BATCH, 8080, req('DELETE', '/x')), 'allow');
    assert.equal(tcpDenial(compile([]), BATCH, 8080), undefined);
  });

  it('allows by SPIFFE ID, namespace or service account; anyone else is denied with a reason', () => {
    const a = compile([{ name: 'payments-callers', rules: [{ identities: [FRONTEND] }, { namespaces: ['jobs'], ports: [9090] }, { serviceAccounts: ['shop/web'] }] }]);
    assert.equal(tcpDenial(a, FRONTEND, 8080), undefined);
    assert.equal(tcpDenial(a, WEB, 8080), undefined);
    assert.equal(tcpDenial(a, BATCH, 9090), undefined);
    assert.match(tcpDenial(a, BATCH, 8080)!, /spiffe:\/\/cluster\.local\/ns\/jobs\/sa\/batch may not call port 8080: no rule of the authorization policies \(payments-callers\) allows it/);
    assert.match(tcpDenial(a, '', 8080)!, /without a mesh identity/);
    assert.equal(http(a, BATCH, 8080, req('GET', '/')), 'deny payments-callers/');
  });

  it('requires every field of a rule to match; an empty rule matches every mesh caller; a policy without rules allows nobody', () => {
    const both = compile([{ name: 'p', rules: [{ namespaces: ['shop'], serviceAccounts: ['jobs/batch'] }] }]);
    assert.notEqual(tcpDenial(both, WEB, 80), undefined);
    assert.notEqual(tcpDenial(both, BATCH, 80), undefined);
    assert.equal(tcpDenial(compile([{ name: 'any', rules: [{}] }]), BATCH, 80), undefined);
    assert.notEqual(tcpDenial(compile([{ name: 'none', rules: [] }]), FRONTEND, 80), undefined);
  });

  it('matches namespaces and service accounts in its own trust domain only; a whole SPIFFE ID of another still matches', () => {
    const EVIL = 'spiffe://evil.example/ns/shop/sa/web';
    const a = compile([{ name: 'shop', rules: [{ namespaces: ['shop'] }, { serviceAccounts: ['shop/web'], ports: [9090] }] }]);
    assert.equal(tcpDenial(a, WEB, 8080), undefined);
    assert.equal(tcpDenial(a, WEB, 9090), undefined);
    assert.match(tcpDenial(a, EVIL, 8080)!, /evil\.example\/ns\/shop\/sa\/web may not call port 8080/);
    assert.notEqual(tcpDenial(a, EVIL, 9090), undefined);
    assert.equal(tcpDenial(compile([{ name: 'partner', rules: [{ identities: [EVIL] }] }]), EVIL, 8080), undefined);
    // The rule follows the workload's trust domain, not cluster.local.
    assert.notEqual(tcpDenial(compile([{ name: 'shop', rules: [{ namespaces: ['shop'] }] }], {}, {}, 'example.org'), WEB, 8080), undefined);
    // A DENY rule by namespace does not catch another trust domain's "shop" either: name it by its whole ID.
    const deny = compile([{ name: 'no-shop', action: 'DENY', rules: [{ namespaces: ['shop'] }] }]);
    assert.notEqual(tcpDenial(deny, WEB, 8080), undefined);
    assert.equal(tcpDenial(deny, EVIL, 8080), undefined);
  });

  describe('default inbound policy', () => {
    it('all-authenticated: mesh callers, not plain ones; deny: nobody; all-unauthenticated: both', () => {
      const authenticated = compile(undefined, {}, { defaultInboundPolicy: 'all-authenticated', mtlsMode: 'PERMISSIVE' });
      assert.equal(tcpDenial(authenticated, WEB, 80), undefined);
      assert.match(tcpDenial(authenticated, '', 80)!, /a caller without a mesh identity may not call port 80: the default inbound policy of this workload is all-authenticated/);
      assert.equal(http(authenticated, '', 80, req('GET', '/')), 'deny default:all-authenticated/');

      const deny = compile(undefined, { defaultPolicy: 'deny' });
      assert.match(tcpDenial(deny, WEB, 80)!, /may not call port 80: the default inbound policy of this workload is deny, and no ALLOW authorization policy selects it/);
      assert.equal(http(deny, WEB, 80, req('GET', '/')), 'deny default:deny/');
      assert.equal(http(deny, '', 80, req('GET', '/')), 'deny default:deny/');

      const open = compile(undefined, { defaultPolicy: 'all-unauthenticated' });
      assert.equal(tcpDenial(open, '', 80), undefined);
      assert.equal(http(open, '', 80, req('GET', '/')), 'allow');
    });

    it('the workload wins over the mesh; unset, PERMISSIVE lets plain callers in as it always did, per port too', () => {
      const config = (inbound: InboundConfig, mesh: Partial<MeshSettings> = {}) => ({ mesh: { ...MESH, ...mesh }, inbound });
      assert.equal(defaultInboundPolicy(config({}), 80), 'all-authenticated');
      assert.equal(defaultInboundPolicy(config({}, { mtlsMode: 'PERMISSIVE' }), 80), 'all-unauthenticated');
      assert.equal(defaultInboundPolicy(config({ mtlsMode: 'PERMISSIVE' }), 80), 'all-unauthenticated');
      assert.equal(defaultInboundPolicy(config({ portMtlsModes: { 9090: 'PERMISSIVE' } }), 9090), 'all-unauthenticated');
      assert.equal(defaultInboundPolicy(config({ portMtlsModes: { 9090: 'PERMISSIVE' } }), 8080), 'all-authenticated');
      assert.equal(defaultInboundPolicy(config({ defaultPolicy: 'deny' }, { defaultInboundPolicy: 'all-unauthenticated' }), 80), 'deny');
      assert.equal(defaultInboundPolicy(config({}, { defaultInboundPolicy: 'all-authenticated', mtlsMode: 'PERMISSIVE' }), 80), 'all-authenticated');
      assert.equal(inboundMtlsMode(config({ mtlsMode: 'PERMISSIVE', portMtlsModes: { 5432: 'STRICT' } }), 5432), 'STRICT');
      assert.equal(inboundMtlsMode(config({ mtlsMode: 'PERMISSIVE' }), 5432), 'PERMISSIVE');
      assert.equal(inboundMtlsMode(config({}), 5432), 'STRICT');
    });

    it('an ALLOW policy replaces the default: under deny it opens what it allows; under all-unauthenticated it closes the rest', () => {
      const a = compile([{ name: 'web-only', rules: [{ serviceAccounts: ['shop/web'] }] }], { defaultPolicy: 'deny' });
      assert.equal(tcpDenial(a, WEB, 80), undefined);
      assert.match(tcpDenial(a, BATCH, 80)!, /no rule of the authorization policies \(web-only\)/);
      const b = compile([{ name: 'web-only', rules: [{ serviceAccounts: ['shop/web'] }] }], { defaultPolicy: 'all-unauthenticated' });
      assert.notEqual(tcpDenial(b, '', 80), undefined);
      assert.notEqual(tcpDenial(b, BATCH, 80), undefined);
    });
  });

  describe('DENY, ALLOW and AUDIT', () => {
    it('DENY is tried first: a caller an ALLOW rule lets in is still denied by a DENY rule, naming the policy and rule', () => {
      const a = compile([
        { name: 'shop-callers', rules: [{ namespaces: ['shop', 'jobs'] }] },
        { name: 'no-batch', action: 'DENY', rules: [{ identities: [FRONTEND], ports: [9] }, { serviceAccounts: ['jobs/batch'] }] },
      ]);
      assert.equal(tcpDenial(a, WEB, 80), undefined);
      assert.match(tcpDenial(a, BATCH, 80)!, /jobs\/sa\/batch may not call port 80: rule 1 of DENY authorization policy no-batch denies it/);
      assert.equal(http(a, BATCH, 80, req('GET', '/')), 'deny no-batch/1');
    });

    it('DENY alone leaves the default in force for everyone else', () => {
      const a = compile([{ name: 'no-batch', action: 'DENY', rules: [{ serviceAccounts: ['jobs/batch'] }] }]);
      assert.equal(tcpDenial(a, WEB, 80), undefined);
      assert.notEqual(tcpDenial(a, BATCH, 80), undefined);
      assert.match(tcpDenial(a, '', 80)!, /all-authenticated/);
    });

    it('a DENY rule without a caller field catches plain callers too; ALLOW rules never let them in', () => {
      const a = compile([{ name: 'no-admin', action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] }], { defaultPolicy: 'all-unauthenticated' });
      assert.equal(http(a, '', 80, req('GET', '/admin/x')), 'deny no-admin/0');
      assert.equal(http(a, '', 80, req('GET', '/public')), 'allow');
      const b = compile([{ name: 'everyone', rules: [{}] }], { defaultPolicy: 'all-unauthenticated' });
      assert.equal(http(b, '', 80, req('GET', '/')), 'deny everyone/');
    });

    it('AUDIT denies nothing: what its rules match is reported as audited, after DENY and ALLOW have allowed it', () => {
      const a = compile([
        { name: 'try-no-delete', action: 'AUDIT', rules: [{ methods: ['DELETE'] }, { serviceAccounts: ['jobs/batch'], ports: [5432] }] },
        { name: 'no-frontend', action: 'DENY', rules: [{ identities: [FRONTEND] }] },
      ]);
      assert.equal(http(a, WEB, 80, req('DELETE', '/orders/1')), 'audit try-no-delete/0');
      assert.equal(http(a, WEB, 80, req('GET', '/orders/1')), 'allow');
      assert.equal(http(a, FRONTEND, 80, req('DELETE', '/orders/1')), 'deny no-frontend/0');
      assert.equal(a.connection(BATCH, 5432).tcp?.kind, 'audit');
      assert.equal(tcpDenial(a, BATCH, 5432), undefined);
      assert.equal(a.connection(WEB, 80).tcp, undefined, 'a rule about methods says nothing of TCP connections');
    });
  });

  describe('HTTP rules', () => {
    const a = compile([
      {
        name: 'api',
        rules: [
          { serviceAccounts: ['shop/web'], methods: ['GET', 'HEAD'], pathPrefixes: ['/orders'] },
          { serviceAccounts: ['shop/web'], methods: ['POST'], paths: ['/orders'], headers: { 'x-tenant': 'blue' } },
          { namespaces: ['jobs'], ports: [9090] },
        ],
      },
      { name: 'no-admin', action: 'DENY', rules: [{ pathPrefixes: ['/orders/admin'] }, { methods: ['DELETE'], paths: ['/orders'] }] },
    ]);

    it('allows by method, path (exact or prefix on whole segments) and exact headers; every field of the rule must match', () => {
      assert.equal(http(a, WEB, 80, req('GET', '/orders')), 'allow');
      assert.equal(http(a, WEB, 80, req('HEAD', '/orders/7?full=1')), 'allow');
      assert.equal(http(a, WEB, 80, req('GET', '/ordersx')), 'deny api/');
      assert.equal(http(a, WEB, 80, req('PUT', '/orders/7')), 'deny api/');
      assert.equal(http(a, WEB, 80, req('POST', '/orders', { 'x-tenant': 'blue' })), 'allow');
      assert.equal(http(a, WEB, 80, req('POST', '/orders', { 'x-tenant': 'red' })), 'deny api/');
      assert.equal(http(a, WEB, 80, req('POST', '/orders/1', { 'x-tenant': 'blue' })), 'deny api/');
      assert.equal(http(a, WEB, 80, req('POST', '/orders')), 'deny api/');
      assert.equal(http(a, WEB, 80, testRequest({ method: 'POST', path: '/orders', headers: { 'x-tenant': ['red', 'blue'] } })), 'allow');
      assert.equal(http(a, FRONTEND, 80, req('GET', '/orders')), 'deny api/');
      assert.equal(http(a, BATCH, 9090, req('DELETE', '/anything')), 'allow');
    });

    it('matches the path as the app would route it: dot segments, repeated slashes and escapes do not slip past a rule', () => {
      for (const path of ['/orders/admin', '/orders/admin/', '/orders//admin', '/orders/x/../admin', '/orders/%61dmin/users', '/orders%2Fadmin', '/orders/./admin?x=1', '/public/%2e%2e/orders/admin']) {
        assert.equal(http(a, WEB, 80, req('GET', path)), 'deny no-admin/0', path);
      }
      assert.equal(http(a, WEB, 80, req('GET', '/orders/administrator')), 'allow');
      assert.equal(http(a, WEB, 80, req('GET', '/public/../orders')), 'allow');
      assert.equal(http(a, WEB, 80, req('GET', '/orders/../secrets')), 'deny api/');
    });

    it('never matches an opaque TCP connection with a rule that looks at requests, ALLOW or DENY', () => {
      // Only rule 2 (no HTTP field) can let a TCP caller in, and only on 9090.
      assert.equal(tcpDenial(a, BATCH, 9090), undefined);
      assert.match(tcpDenial(a, WEB, 80)!, /no rule of the authorization policies \(api\) allows it/);
      const denyByPath = compile([{ name: 'no-admin', action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] }]);
      assert.equal(tcpDenial(denyByPath, WEB, 80), undefined);
    });

    it('gives a caller whose rules do not look at requests one verdict for its connection', () => {
      const c = a.connection(BATCH, 9090);
      assert.equal(c.request(req('GET', '/')), c.request(req('DELETE', '/x')));
      assert.equal(a.connection(BATCH, 9090), c, 'compiled once per caller and port');
    });
  });

  it('answers 403 with x-tsmesh-error: denied and the policy, reports it, passes an audited request on, and compiles once per config', async () => {
    const found: Finding[] = [];
    let connections = 0;
    const counting = (x: Authorizer): Authorizer => ({ connection: (p, port) => (connections++, x.connection(p, port)) });
    let current = counting(compile([{ name: 'only-frontend', rules: [{ identities: [FRONTEND] }] }]));
    const handler = authzLayer({ authorizer: () => current, peer: WEB, port: 8080, found: (f) => found.push(f) })(() => Promise.resolve(testResponse(200)));
    for (let i = 0; i < 3; i++) {
      const res = await handler(testRequest());
      assert.equal(res.status, 403);
      assert.equal(res.headers['x-tsmesh-error'], 'denied');
      assert.equal(res.headers['x-tsmesh-policy'], 'only-frontend');
      assert.match(await bodyText(res), /shop\/sa\/web may not call port 8080/);
    }
    assert.equal(found.length, 3);
    assert.equal(connections, 1);
    current = counting(compile([{ name: 'web-too', rules: [{ serviceAccounts: ['shop/web'] }] }, { name: 'watch', action: 'AUDIT', rules: [{ methods: ['GET'] }] }]));
    assert.equal((await handler(testRequest())).status, 200);
    assert.equal(connections, 2);
    assert.deepEqual(found.slice(3).map((f) => `${f.kind} ${f.policy}/${f.rule}`), ['audit watch/0']);
  });
});
