// The tsmesh.io CustomResourceDefinitions of manifests/crds.yaml against a
// real kube-apiserver: full policies are stored as written (nothing pruned);
// each mistake the schema can see is refused with a message that names the
// field, and proxy/config/validate.ts (through the control plane's mapping)
// refuses the same document at the same path, so the two layers agree. What
// only the control plane can see passes the schema and fails the mapping.
// The status subresource and the printer columns work as kubectl expects.
// A mesh source started before the CRDs exist works without policies and
// picks them up once the CRDs are installed.

import assert from 'node:assert/strict';
import { request } from 'node:https';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { createKubernetesSource, type KubernetesMeshSource } from '../../control/sources/kubernetes.js';
import { silentLogger } from '../../lib/log.js';
import { ValidationError } from '../../lib/schema.js';
import { authorizationPolicyModel, trafficPolicyModel, type PolicyObject } from '../../control/sources/kubernetes-policies.js';
import { createNamespace, eventually, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { readManifests, resolveResource, serverSideApply } from './manifests.js';

const GROUP = 'tsmesh.io';
const VERSION = 'v1alpha1';
const NS = 'shop';

/** Every field of a TrafficPolicy, each at a legal value. */
const FULL_TRAFFIC = {
  targetRef: { kind: 'Service', name: 'payments' },
  routes: [
    {
      name: 'canary',
      match: { pathPrefix: '/api', headers: { 'x-canary': 'yes' } },
      backends: [
        { service: 'payments', weight: 90 },
        { service: 'payments-v2.shop', weight: 10 },
      ],
      timeout: '2s',
      retries: {
        attempts: 3,
        perTryTimeout: '500ms',
        backoff: { base: '25ms', max: '250ms' },
        retryOn: ['5xx', 'gateway-error', 'connect-failure', 'reset', '503'],
        budget: { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' },
      },
      faults: { abort: { percent: 1.5, status: 503 }, delay: { percent: 10, duration: '100ms' } },
    },
    {
      name: 'gateway-style',
      match: { pathExact: '/exact', headerRegex: { 'x-version': 'v[0-9]+' }, queryParams: { q: 'x' }, queryParamRegex: { page: '[0-9]+' }, method: 'GET' },
      backends: [
        {
          service: 'payments',
          weight: 1,
          port: 8080,
          filters: { requestHeaders: { set: { 'x-b': '1' }, add: { 'x-c': '2' }, remove: ['x-d'] }, responseHeaders: { set: { 'x-e': '3' } }, mirrors: [{ service: 'shadow', port: 8080, percent: 5 }] },
        },
      ],
      backendTimeout: '1s',
      filters: {
        requestHeaders: { set: { 'x-route': 'gateway-style' } },
        responseHeaders: { add: { 'x-served-by': 'payments' }, remove: ['server'] },
        rewrite: { hostname: 'payments.example.org', path: { replaceFullPath: '/v2/exact' } },
        mirrors: [{ service: 'shadow.shop', percent: 50.5 }],
      },
    },
    { name: 'moved', match: { pathRegex: '/old/.*' }, filters: { redirect: { scheme: 'https', hostname: 'example.org', port: 8443, path: { replaceFullPath: '/new' }, statusCode: 301 } } },
    { name: 'prefix-rewrite', match: { pathPrefix: '/legacy' }, filters: { rewrite: { path: { replacePrefixMatch: '/' } } } },
    { match: { pathPrefix: '/' } },
  ],
  timeout: '1m30s',
  retries: { attempts: 2, retryOn: ['gateway-error'] },
  circuitBreaker: { consecutiveFailures: 5, failureRate: { threshold: 0.5, window: '10s', minRequests: 20 }, ejectionTime: '30s', maxEjectionPercent: 50, countCancellations: false },
  faults: { delay: { percent: 0, duration: '1s' } },
  limits: { maxRequestsPerEndpoint: 64, maxPendingRequests: 1_000_000, pendingTimeout: '59m59s1000ms' },
};

const FULL_AUTHZ = {
  targetRef: { kind: 'ServiceAccount', name: 'payments' },
  action: 'ALLOW',
  rules: [
    { identities: ['spiffe://cluster.local/ns/shop/sa/frontend'] },
    { namespaces: ['ops'], serviceAccounts: ['ops/prober'], ports: [8080, 9090] },
    {},
    { serviceAccounts: ['shop/web'], methods: ['GET', 'PROPFIND'], paths: ['/orders', '/'], pathPrefixes: ['/api/v1', '/static/'], headers: { 'x-tenant': 'blue', 'X-Env': 'prod' } },
  ],
};

interface Case {
  what: string;
  /** Changes applied to a deep copy of the full spec. */
  edit: (spec: any) => void;
  /** The field both the API server and validate.ts name. */
  field: string;
}

const TRAFFIC_REFUSED: Case[] = [
  { what: 'a target that is not a Service', edit: (s) => (s.targetRef.kind = 'Deployment'), field: 'spec.targetRef.kind' },
  { what: 'no target', edit: (s) => delete s.targetRef, field: 'spec.targetRef' },
  { what: 'a path prefix without a leading slash', edit: (s) => (s.routes[0].match.pathPrefix = 'api'), field: 'spec.routes[0].match.pathPrefix' },
  { what: 'an empty header value', edit: (s) => (s.routes[0].match.headers['x-canary'] = ''), field: 'spec.routes[0].match.headers.x-canary' },
  { what: 'a weight above 1000000', edit: (s) => (s.routes[0].backends[1].weight = 1_000_001), field: 'spec.routes[0].backends[1].weight' },
  { what: 'a negative weight', edit: (s) => (s.routes[0].backends[0].weight = -1), field: 'spec.routes[0].backends[0].weight' },
  { what: 'a fractional weight', edit: (s) => (s.routes[0].backends[0].weight = 1.5), field: 'spec.routes[0].backends[0].weight' },
  { what: 'no backends in the list', edit: (s) => (s.routes[0].backends = []), field: 'spec.routes[0].backends' },
  { what: 'a redirect status that is not 301, 302, 303, 307 or 308', edit: (s) => (s.routes[2].filters.redirect.statusCode = 300), field: 'spec.routes[2].filters.redirect.statusCode' },
  { what: 'a redirect scheme other than http and https', edit: (s) => (s.routes[2].filters.redirect.scheme = 'ftp'), field: 'spec.routes[2].filters.redirect.scheme' },
  { what: 'a path modifier with both of its fields', edit: (s) => (s.routes[3].filters.rewrite.path.replaceFullPath = '/x'), field: 'spec.routes[3].filters.rewrite.path' },
  { what: 'a redirect and a rewrite on one route', edit: (s) => (s.routes[2].filters.rewrite = { hostname: 'a.example.org' }), field: 'spec.routes[2].filters' },
  { what: 'a mirror percent above 100', edit: (s) => (s.routes[1].filters.mirrors[0].percent = 101), field: 'spec.routes[1].filters.mirrors[0].percent' },
  { what: 'a method in lower case', edit: (s) => (s.routes[1].match.method = 'get'), field: 'spec.routes[1].match.method' },
  { what: 'a backend port of 0', edit: (s) => (s.routes[1].backends[0].port = 0), field: 'spec.routes[1].backends[0].port' },
  { what: 'a backend without a service', edit: (s) => delete s.routes[0].backends[0].service, field: 'spec.routes[0].backends[0].service' },
  { what: 'a duration without a unit', edit: (s) => (s.timeout = '5'), field: 'spec.timeout' },
  { what: 'a duration with an unknown unit', edit: (s) => (s.routes[0].timeout = '2x'), field: 'spec.routes[0].timeout' },
  { what: 'a negative duration', edit: (s) => (s.retries.perTryTimeout = '-1s'), field: 'spec.retries.perTryTimeout' },
  { what: 'more than 10 attempts', edit: (s) => (s.retries.attempts = 11), field: 'spec.retries.attempts' },
  { what: 'zero attempts', edit: (s) => (s.routes[0].retries.attempts = 0), field: 'spec.routes[0].retries.attempts' },
  { what: 'retries without attempts', edit: (s) => delete s.routes[0].retries.attempts, field: 'spec.routes[0].retries.attempts' },
  { what: 'an unknown retry condition', edit: (s) => (s.retries.retryOn = ['5xx', 'teapot']), field: 'spec.retries.retryOn[1]' },
  { what: 'a retry status outside 100-599', edit: (s) => (s.routes[0].retries.retryOn = ['600']), field: 'spec.routes[0].retries.retryOn[0]' },
  { what: 'a backoff without a unit', edit: (s) => (s.routes[0].retries.backoff.base = '10'), field: 'spec.routes[0].retries.backoff.base' },
  { what: 'a budget ratio above 1', edit: (s) => (s.routes[0].retries.budget.ratio = 1.5), field: 'spec.routes[0].retries.budget.ratio' },
  { what: 'a negative budget rate', edit: (s) => (s.routes[0].retries.budget.minRetriesPerSecond = -1), field: 'spec.routes[0].retries.budget.minRetriesPerSecond' },
  { what: 'a failure-rate threshold below 0.01', edit: (s) => (s.circuitBreaker.failureRate.threshold = 0.001), field: 'spec.circuitBreaker.failureRate.threshold' },
  { what: 'a failure rate without a threshold', edit: (s) => delete s.circuitBreaker.failureRate.threshold, field: 'spec.circuitBreaker.failureRate.threshold' },
  { what: 'zero consecutive failures', edit: (s) => (s.circuitBreaker.consecutiveFailures = 0), field: 'spec.circuitBreaker.consecutiveFailures' },
  { what: 'an ejection percent above 100', edit: (s) => (s.circuitBreaker.maxEjectionPercent = 101), field: 'spec.circuitBreaker.maxEjectionPercent' },
  { what: 'countCancellations that is not true or false', edit: (s) => (s.circuitBreaker.countCancellations = 'yes'), field: 'spec.circuitBreaker.countCancellations' },
  { what: 'no room for pending requests', edit: (s) => (s.limits.maxPendingRequests = 0), field: 'spec.limits.maxPendingRequests' },
  { what: 'more than 1000000 pending requests', edit: (s) => (s.limits.maxPendingRequests = 1_000_001), field: 'spec.limits.maxPendingRequests' },
  { what: 'a fractional request limit', edit: (s) => (s.limits.maxRequestsPerEndpoint = 2.5), field: 'spec.limits.maxRequestsPerEndpoint' },
  { what: 'a request limit written as a string', edit: (s) => (s.limits.maxRequestsPerEndpoint = '64'), field: 'spec.limits.maxRequestsPerEndpoint' },
  { what: 'a pending timeout without a unit', edit: (s) => (s.limits.pendingTimeout = '5'), field: 'spec.limits.pendingTimeout' },
  { what: 'a zero pending timeout', edit: (s) => (s.limits.pendingTimeout = '0s'), field: 'spec.limits.pendingTimeout' },
  { what: 'a pending timeout under 1ms', edit: (s) => (s.limits.pendingTimeout = '0.4ms'), field: 'spec.limits.pendingTimeout' },
  { what: 'a pending timeout above 1h', edit: (s) => (s.limits.pendingTimeout = '1h1ms'), field: 'spec.limits.pendingTimeout' },
  { what: 'a pending timeout of a day', edit: (s) => (s.limits.pendingTimeout = '1d'), field: 'spec.limits.pendingTimeout' },
  { what: 'an abort status above 599', edit: (s) => (s.routes[0].faults.abort.status = 700), field: 'spec.routes[0].faults.abort.status' },
  { what: 'an abort status below 200', edit: (s) => (s.routes[0].faults.abort.status = 199), field: 'spec.routes[0].faults.abort.status' },
  { what: 'an abort percent above 100', edit: (s) => (s.routes[0].faults.abort.percent = 100.5), field: 'spec.routes[0].faults.abort.percent' },
  { what: 'a delay without a duration', edit: (s) => delete s.faults.delay.duration, field: 'spec.faults.delay.duration' },
];

const TRAFFIC_SEMANTIC: Case[] = [
  { what: 'a header regex with lookahead (RE2 has none)', edit: (s) => (s.routes[1].match.headerRegex['x-version'] = 'v(?=1)'), field: 'spec.routes[1].match.headerRegex.x-version' },
  { what: "a header regex counting past RE2's 1000", edit: (s) => (s.routes[1].match.headerRegex['x-version'] = 'v[0-9]{1,1001}'), field: 'spec.routes[1].match.headerRegex.x-version' },
  { what: 'replacePrefixMatch on an exact path match', edit: (s) => (s.routes[1].filters.rewrite.path = { replacePrefixMatch: '/v2' }), field: 'spec.routes[1].filters.rewrite.path.replacePrefixMatch' },
  { what: 'a redirect with backends', edit: (s) => (s.routes[2].backends = [{ service: 'payments', weight: 1 }]), field: 'spec.routes[2].filters.redirect' },
  { what: 'two path matches in one match', edit: (s) => (s.routes[1].match.pathPrefix = '/exact'), field: 'spec.routes[1].match' },
  { what: 'backoff.max shorter than backoff.base', edit: (s) => (s.routes[0].retries.backoff = { base: '1s', max: '100ms' }), field: 'spec.routes[0].retries.backoff.max' },
  { what: 'every backend at weight 0', edit: (s) => s.routes[0].backends.forEach((b: any) => (b.weight = 0)), field: 'spec.routes[0].backends' },
];

const AUTHZ_REFUSED: Case[] = [
  { what: 'a target that is neither Service nor ServiceAccount', edit: (s) => (s.targetRef.kind = 'Deployment'), field: 'spec.targetRef.kind' },
  { what: 'no rules', edit: (s) => (s.rules = []), field: 'spec.rules' },
  { what: 'rules missing', edit: (s) => delete s.rules, field: 'spec.rules' },
  { what: 'an identity that is not a SPIFFE ID', edit: (s) => (s.rules[0].identities = ['frontend']), field: 'spec.rules[0].identities[0]' },
  { what: 'a service account without its namespace', edit: (s) => (s.rules[1].serviceAccounts = ['prober']), field: 'spec.rules[1].serviceAccounts[0]' },
  { what: 'port 0', edit: (s) => (s.rules[1].ports = [0]), field: 'spec.rules[1].ports[0]' },
  { what: 'port 70000', edit: (s) => (s.rules[1].ports = [80, 70000]), field: 'spec.rules[1].ports[1]' },
  { what: 'an empty namespace', edit: (s) => (s.rules[1].namespaces = ['']), field: 'spec.rules[1].namespaces[0]' },
  { what: 'an action other than ALLOW, DENY and AUDIT', edit: (s) => (s.action = 'REJECT'), field: 'spec.action' },
  { what: 'a method in lower case', edit: (s) => (s.rules[3].methods = ['GET', 'post']), field: 'spec.rules[3].methods[1]' },
  { what: 'a path without a leading slash', edit: (s) => (s.rules[3].paths = ['orders']), field: 'spec.rules[3].paths[0]' },
  { what: 'a path prefix without a leading slash', edit: (s) => (s.rules[3].pathPrefixes = ['/api', 'api']), field: 'spec.rules[3].pathPrefixes[1]' },
  { what: 'an empty header value', edit: (s) => (s.rules[3].headers['x-tenant'] = ''), field: 'spec.rules[3].headers.x-tenant' },
];

const AUTHZ_SEMANTIC: Case[] = [
  { what: 'a SPIFFE ID without a trust domain', edit: (s) => (s.rules[0].identities = ['spiffe:///ns/shop/sa/frontend']), field: 'spec.rules[0].identities[0]' },
  { what: 'a SPIFFE ID with an upper-case trust domain', edit: (s) => (s.rules[0].identities = ['spiffe://Cluster.local/ns/shop/sa/x']), field: 'spec.rules[0].identities[0]' },
  { what: 'a path that is not written normalized (it could never match)', edit: (s) => (s.rules[3].paths = ['/orders/../admin']), field: 'spec.rules[3].paths[0]' },
  { what: 'a path prefix with a query', edit: (s) => (s.rules[3].pathPrefixes = ['/api?x=1']), field: 'spec.rules[3].pathPrefixes[0]' },
  { what: 'a header name that is not a token', edit: (s) => (s.rules[3].headers = { 'x tenant': 'blue' }), field: 'spec.rules[3].headers.x tenant' },
];

const copy = <T>(x: T): T => structuredClone(x);

function body(kind: 'TrafficPolicy' | 'AuthorizationPolicy', name: string, spec: unknown): PolicyObject & { apiVersion: string; kind: string } {
  return { apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name, namespace: NS }, spec };
}

/** What the API server said when it refused a request. */
function apiMessage(err: unknown): string {
  const b = (err as { body?: unknown }).body;
  if (typeof b === 'string') {
    try {
      return (JSON.parse(b) as { message?: string }).message ?? b;
    } catch {
      return b;
    }
  }
  return (err as Error).message;
}

/** The path validate.ts names when it refuses the object (the control plane's mapping). */
function mappingRefusal(kind: 'TrafficPolicy' | 'AuthorizationPolicy', spec: unknown): ValidationError | undefined {
  try {
    if (kind === 'TrafficPolicy') trafficPolicyModel(body(kind, 'x', spec));
    else authorizationPolicyModel(body(kind, 'x', spec));
  } catch (e) {
    if (e instanceof ValidationError) return e;
    throw e;
  }
  return undefined;
}

/** GET with kubectl's Accept header for tables (what `kubectl get` prints). */
function getTable(kc: KubeConfig, path: string): Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }> {
  const cluster = kc.getCurrentCluster()!;
  return new Promise((resolvePromise, reject) => {
    const opts: Parameters<typeof request>[1] = { method: 'GET', headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } };
    kc.applyToHTTPSOptions(opts).then(() => {
      const req = request(new URL(path, cluster.server), opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${text}`));
          else resolvePromise(JSON.parse(text));
        });
      });
      req.on('error', reject);
      req.end();
    }, reject);
  });
}

describe('tsmesh.io CustomResourceDefinitions (real kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  let api: CustomObjectsApi;
  let n = 0;
  let source: KubernetesMeshSource | undefined;
  let registry: Registry;
  const name = (prefix: string): string => `${prefix}-${++n}`;

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    const kc = server.kc;
    // A source started before the CRDs exist is ready, with no policies. Its watches end every few
    // seconds, and an informer with no progress for 9 s is restarted (kubernetes-informer.ts).
    registry = new Registry();
    source = createKubernetesSource({ kc, trustDomain: 'cluster.local', registry, log: silentLogger, backoffInitialMs: 100, backoffMaxMs: 500, watchTimeoutSeconds: [4, 6], stallMarginMs: 3000, writeStatus: false });
    const first = await source.synced();
    assert.deepEqual([first.trafficPolicies, first.authorizationPolicies], [[], []]);
    for (const d of readManifests().filter((x) => x.file === 'crds.yaml' && x.object.kind === 'CustomResourceDefinition')) {
      await serverSideApply(kc, d.object);
      const spec = d.object['spec'] as { group: string; names: { kind: string } };
      await eventually(() => resolveResource(kc, `${spec.group}/${VERSION}`, spec.names.kind), 20_000, `${spec.names.kind} to be served`);
    }
    await createNamespace(kc, NS);
    api = kc.makeApiClient(CustomObjectsApi);
  });
  after(async function () {
    source?.close();
    await server?.stop();
  });

  const create = (kind: 'TrafficPolicy' | 'AuthorizationPolicy', objName: string, spec: unknown, fieldValidation?: string): Promise<any> =>
    api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: kind === 'TrafficPolicy' ? 'trafficpolicies' : 'authorizationpolicies',
      body: body(kind, objName, spec),
      ...(fieldValidation ? { fieldValidation } : {}),
    });

  /** 422 Invalid for schema violations; 400 BadRequest for a field the schema does not know. */
  async function refusedWith(kind: 'TrafficPolicy' | 'AuthorizationPolicy', spec: unknown, code = 422): Promise<string> {
    try {
      await create(kind, name('refused'), spec, 'Strict');
    } catch (e) {
      assert.equal((e as { code?: number }).code, code, apiMessage(e));
      return apiMessage(e);
    }
    assert.fail('the API server accepted it');
  }

  for (const [kind, full] of [
    ['TrafficPolicy', FULL_TRAFFIC],
    ['AuthorizationPolicy', FULL_AUTHZ],
  ] as const) {
    it(`stores a ${kind} that sets every field exactly as written, and the control plane maps it`, async function () {
      const objName = name(kind.toLowerCase());
      const created = await create(kind, objName, copy(full), 'Strict');
      assert.deepEqual(created.spec, full, 'the schema pruned or changed a field');
      assert.equal(created.metadata.generation, 1);
      assert.equal(mappingRefusal(kind, created.spec), undefined);
    });
  }

  describe('TrafficPolicy: refused by the schema, at the field validate.ts names too', function () {
    for (const c of TRAFFIC_REFUSED) {
      it(c.what, async function () {
        const spec = copy(FULL_TRAFFIC);
        c.edit(spec);
        const message = await refusedWith('TrafficPolicy', spec);
        if (process.env['TSMESH_SHOW_MESSAGES']) console.log(`        ${message}`);
        assert.ok(message.includes(`${c.field}:`) || message.includes(`${c.field} `), `the message names ${c.field}: ${message}`);
        assert.equal(mappingRefusal('TrafficPolicy', spec)?.path, c.field, 'validate.ts refuses it at the same path');
      });
    }
  });

  describe('TrafficPolicy: passes the schema, refused by the control plane (status InvalidSpec)', function () {
    for (const c of TRAFFIC_SEMANTIC) {
      it(c.what, async function () {
        const spec = copy(FULL_TRAFFIC);
        c.edit(spec);
        await create('TrafficPolicy', name('semantic'), spec, 'Strict');
        assert.equal(mappingRefusal('TrafficPolicy', spec)?.path, c.field);
      });
    }
  });

  describe('AuthorizationPolicy: refused by the schema, at the field validate.ts names too', function () {
    for (const c of AUTHZ_REFUSED) {
      it(c.what, async function () {
        const spec = copy(FULL_AUTHZ);
        c.edit(spec);
        const message = await refusedWith('AuthorizationPolicy', spec);
        assert.ok(message.includes(`${c.field}:`) || message.includes(`${c.field} `), `the message names ${c.field}: ${message}`);
        assert.equal(mappingRefusal('AuthorizationPolicy', spec)?.path, c.field, 'validate.ts refuses it at the same path');
      });
    }
  });

  describe('AuthorizationPolicy: passes the schema, refused by the control plane (status InvalidSpec)', function () {
    for (const c of AUTHZ_SEMANTIC) {
      it(c.what, async function () {
        const spec = copy(FULL_AUTHZ);
        c.edit(spec);
        await create('AuthorizationPolicy', name('semantic'), spec, 'Strict');
        assert.equal(mappingRefusal('AuthorizationPolicy', spec)?.path, c.field);
      });
    }
  });

  it('a source started before the CRDs were installed picks policies up once they are', async function () {
    // A Service of its own: the policies of the tests above target payments, and of two policies on one
    // Service the older wins (to the second, then by name), so one made a second earlier kept this one out.
    await server!.kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: NS, body: { metadata: { name: 'reviews' }, spec: { ports: [{ port: 80 }] } } });
    await create('TrafficPolicy', 'late', { targetRef: { kind: 'Service', name: 'reviews' }, timeout: '2s' });
    const p = await eventually(async () => source!.current()?.trafficPolicies.find((x) => x.name === 'late'), 20_000, 'the policy in the model');
    assert.deepEqual(p.spec, { timeout: '2s' });
    // Each failed attempt while the resource was not served counts as a watch error.
    const metric = await registry.getSingleMetricAsString('tsmesh_control_watch_errors_total');
    assert.match(metric, /tsmesh_control_watch_errors_total\{resource="trafficpolicies"\} [1-9]/);
  });

  for (const c of [
    { what: 'a retry setting', edit: (s: any) => (s.retries.tries = 3), field: 'spec.retries.tries' },
    { what: 'a limit', edit: (s: any) => (s.limits.maxConnections = 10), field: 'spec.limits.maxConnections' },
  ]) {
    it(`refuses an unknown field (${c.what}) under strict field validation (kubectl's default), naming it, as validate.ts does`, async function () {
      const spec = copy(FULL_TRAFFIC);
      c.edit(spec);
      const message = await refusedWith('TrafficPolicy', spec, 400);
      assert.ok(message.includes(`unknown field "${c.field}"`), `the message names ${c.field}: ${message}`);
      assert.equal(mappingRefusal('TrafficPolicy', spec)?.path, c.field, 'validate.ts refuses it at the same path');
    });
  }

  it('keeps status apart from spec (status subresource), and counts generations on spec changes only', async function () {
    const objName = name('status');
    const created = await create('TrafficPolicy', objName, { targetRef: { kind: 'Service', name: 'payments' } });
    const status = {
      observedGeneration: 1,
      conditions: [{ type: 'Accepted', status: 'False', observedGeneration: 1, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'TargetNotFound', message: 'Service payments not found in namespace shop' }],
    };
    // Status sent with the main resource is dropped.
    const replaced = await api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'trafficpolicies', name: objName, body: { ...created, status } });
    assert.equal(replaced.status, undefined);
    assert.equal(replaced.metadata.generation, 1);
    const withStatus = await api.replaceNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, namespace: NS, plural: 'trafficpolicies', name: objName, body: { ...replaced, status } });
    assert.deepEqual(withStatus.status, status);
    assert.equal(withStatus.metadata.generation, 1, 'a status write is not a new generation');
    // A condition that breaks metav1.Condition's rules is refused.
    await assert.rejects(
      api.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: 'trafficpolicies',
        name: objName,
        body: { ...withStatus, status: { conditions: [{ ...status.conditions[0], status: 'Maybe' }] } },
      }),
      (e: unknown) => /status\.conditions\[0\]\.status/.test(apiMessage(e)),
    );
    const edited = await api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'trafficpolicies', name: objName, body: { ...withStatus, spec: { ...withStatus.spec, timeout: '1s' } } });
    assert.equal(edited.metadata.generation, 2);
    assert.deepEqual(edited.status, status, 'a spec change leaves status alone');
  });

  it('prints Target, Accepted and Reason columns (kubectl get), and an AuthorizationPolicy\'s Action', async function () {
    const objName = name('columns');
    const created = await create('TrafficPolicy', objName, { targetRef: { kind: 'Service', name: 'payments' } });
    await api.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: 'trafficpolicies',
      name: objName,
      body: { ...created, status: { observedGeneration: 1, conditions: [{ type: 'Accepted', status: 'True', observedGeneration: 1, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'Accepted', message: 'applied' }] } },
    });
    const table = await getTable(server!.kc, `/apis/${GROUP}/${VERSION}/namespaces/${NS}/trafficpolicies/${objName}`);
    assert.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'Target', 'Accepted', 'Reason', 'Age']);
    assert.deepEqual(table.rows[0]?.cells.slice(0, 4), [objName, 'payments', 'True', 'Accepted']);

    await create('AuthorizationPolicy', 'columns', copy(FULL_AUTHZ));
    const authz = await getTable(server!.kc, `/apis/${GROUP}/${VERSION}/namespaces/${NS}/authorizationpolicies/columns`);
    assert.deepEqual(authz.columnDefinitions.map((c) => c.name), ['Name', 'Target Kind', 'Target', 'Action', 'Accepted', 'Reason', 'Age']);
    assert.deepEqual(authz.rows[0]?.cells.slice(0, 4), ['columns', 'ServiceAccount', 'payments', 'ALLOW']);
  });
});
