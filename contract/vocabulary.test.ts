// The CRDs (manifests/crds.yaml) and the ConfigMap tsmesh-config are written
// by hand; the validator takes its field lists and values from contract/. This
// test finds every place a new field or value must also go.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { MESH_CONFIG_KEYS, POLICY_GROUP, POLICY_VERSION, TRAFFIC_POLICY_PLURAL, AUTHORIZATION_POLICY_PLURAL } from './names.js';
import { FIELDS } from './proxy-config.js';
import { AUTHORIZATION_ACTIONS, DEFAULT_INBOUND_POLICIES, LOCAL_ERRORS, MTLS_MODES, RETRY_CONDITIONS, isRetryOn } from './vocabulary.js';
import { METRICS } from './metrics.js';

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  pattern?: string;
  enum?: unknown[];
}

const crds = parseAllDocuments(readFileSync(new URL('../manifests/crds.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as {
  kind: string;
  spec: { group: string; names: { plural: string }; versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
});

function specOf(plural: string): Schema {
  const crd = crds.find((c) => c.kind === 'CustomResourceDefinition' && c.spec.names.plural === plural);
  assert.ok(crd, `manifests/crds.yaml has no CRD ${plural}`);
  assert.equal(crd.spec.group, POLICY_GROUP);
  const version = crd.spec.versions.find((v) => v.name === POLICY_VERSION);
  assert.ok(version, `CRD ${plural} serves no ${POLICY_VERSION}`);
  return version.schema.openAPIV3Schema.properties!.spec!;
}

/** The schema at a path of property names; `[]` steps into array items. */
function at(schema: Schema, ...path: string[]): Schema {
  let s = schema;
  for (const p of path) {
    const next = p === '[]' ? s.items : s.properties?.[p];
    assert.ok(next, `no ${path.join('.')} in the CRD schema`);
    s = next;
  }
  return s;
}

const keys = (s: Schema): string[] => Object.keys(s.properties ?? {}).sort();
const sorted = (l: readonly string[]): string[] => [...l].sort();

describe('contract: the CRDs and the validator share one field list per object', () => {
  const tp = specOf(TRAFFIC_POLICY_PLURAL);
  const cases: [string, Schema, readonly string[]][] = [
    ['TrafficPolicy spec', tp, ['targetRef', ...FIELDS.TrafficPolicy]],
    ['routes[]', at(tp, 'routes', '[]'), FIELDS.Route],
    ['routes[].match', at(tp, 'routes', '[]', 'match'), FIELDS.RouteMatch],
    ['routes[].backends[]', at(tp, 'routes', '[]', 'backends', '[]'), FIELDS.WeightedBackend],
    ['routes[].filters', at(tp, 'routes', '[]', 'filters'), FIELDS.RouteFilters],
    ['routes[].filters.requestHeaders', at(tp, 'routes', '[]', 'filters', 'requestHeaders'), FIELDS.HeaderModifier],
    ['routes[].filters.responseHeaders', at(tp, 'routes', '[]', 'filters', 'responseHeaders'), FIELDS.HeaderModifier],
    ['routes[].filters.redirect', at(tp, 'routes', '[]', 'filters', 'redirect'), FIELDS.RedirectFilter],
    ['routes[].filters.redirect.path', at(tp, 'routes', '[]', 'filters', 'redirect', 'path'), FIELDS.PathModifier],
    ['routes[].filters.rewrite', at(tp, 'routes', '[]', 'filters', 'rewrite'), FIELDS.RewriteFilter],
    ['routes[].filters.rewrite.path', at(tp, 'routes', '[]', 'filters', 'rewrite', 'path'), FIELDS.PathModifier],
    ['routes[].filters.mirrors[]', at(tp, 'routes', '[]', 'filters', 'mirrors', '[]'), FIELDS.MirrorFilter],
    // A backend takes header modifiers and mirrors only: a redirect or rewrite is the route's.
    ['routes[].backends[].filters', at(tp, 'routes', '[]', 'backends', '[]', 'filters'), FIELDS.RouteFilters.filter((f) => f !== 'redirect' && f !== 'rewrite')],
    ['routes[].retries', at(tp, 'routes', '[]', 'retries'), FIELDS.RetryPolicy],
    ['routes[].faults', at(tp, 'routes', '[]', 'faults'), FIELDS.FaultPolicy],
    ['retries', at(tp, 'retries'), FIELDS.RetryPolicy],
    ['retries.backoff', at(tp, 'retries', 'backoff'), FIELDS.Backoff],
    ['retries.budget', at(tp, 'retries', 'budget'), FIELDS.RetryBudget],
    ['circuitBreaker', at(tp, 'circuitBreaker'), FIELDS.CircuitBreakerPolicy],
    ['circuitBreaker.failureRate', at(tp, 'circuitBreaker', 'failureRate'), FIELDS.FailureRate],
    ['faults', at(tp, 'faults'), FIELDS.FaultPolicy],
    ['faults.abort', at(tp, 'faults', 'abort'), FIELDS.AbortFault],
    ['faults.delay', at(tp, 'faults', 'delay'), FIELDS.DelayFault],
    ['limits', at(tp, 'limits'), FIELDS.LimitsPolicy],
  ];
  for (const [name, schema, fields] of cases) {
    it(`TrafficPolicy ${name}`, () => assert.deepEqual(keys(schema), sorted(fields)));
  }

  it('AuthorizationPolicy spec and rules[]', () => {
    const ap = specOf(AUTHORIZATION_POLICY_PLURAL);
    assert.deepEqual(keys(ap), sorted(['targetRef', ...FIELDS.AuthorizationPolicy.filter((f) => f !== 'name')]));
    assert.deepEqual(keys(at(ap, 'rules', '[]')), sorted(FIELDS.AuthorizationRule));
    assert.deepEqual(at(ap, 'action').enum, [...AUTHORIZATION_ACTIONS]);
  });

  it("retryOn's pattern in the CRD accepts every named condition and status code the validator does, and nothing else", () => {
    for (const path of [['retries'], ['routes', '[]', 'retries']]) {
      const pattern = new RegExp(at(tp, ...path, 'retryOn', '[]').pattern!);
      for (const value of [...RETRY_CONDITIONS, '503', '429', '100', 'retriable-4xx', '600', '5XX', 'reset ']) {
        assert.equal(pattern.test(value), isRetryOn(value), `${path.join('.')}.retryOn ${JSON.stringify(value)}`);
      }
    }
  });
});

describe('contract: the ConfigMap tsmesh-config', () => {
  const text = readFileSync(new URL('../manifests/tsmesh-config.yaml', import.meta.url), 'utf8');
  it('documents every key the control plane reads', () => {
    for (const key of MESH_CONFIG_KEYS) assert.match(text, new RegExp(`^#\\s+${key}\\s`, 'm'), `manifests/tsmesh-config.yaml does not document ${key}`);
  });
  it('names every mTLS mode and default inbound policy', () => {
    for (const mode of [...MTLS_MODES, ...DEFAULT_INBOUND_POLICIES]) assert.match(text, new RegExp(`\\b${mode}\\b`), `manifests/tsmesh-config.yaml does not name ${mode}`);
  });
});

describe('contract: vocabularies', () => {
  it('local error reasons are lower-case tokens a header carries as they are', () => {
    for (const reason of Object.keys(LOCAL_ERRORS)) assert.match(reason, /^[a-z]+(-[a-z0-9]+)*$/);
  });
  it('metric families follow Prometheus naming: counters end in _total, base units', () => {
    for (const [name, f] of Object.entries(METRICS)) {
      assert.match(name, /^tsmesh_[a-z0-9_]+$/);
      if (f.type === 'counter') assert.ok(name.endsWith('_total'), `${name} is a counter without _total`);
      else assert.ok(!name.endsWith('_total'), `${name} is a ${f.type} ending in _total`);
      assert.ok(!/_(ms|milliseconds|kb|mb)(_|$)/.test(name), `${name} is not in base units`);
      if (f.type === 'histogram') assert.ok('buckets' in f, `${name} has no buckets`);
    }
  });
});
