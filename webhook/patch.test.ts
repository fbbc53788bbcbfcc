import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { INIT_FLAGS, parseInitOptions } from '../init/config.js';
import { PROXY_ENV } from '../contract/env.js';
import { applyPodPatch } from './manifests.js';
import { MESH_NAMESPACE, STATUS_ANNOTATION } from '../contract/names.js';
import { InjectionRefused } from './errors.js';
import { buildPodPatch } from './patch.js';
import { fixtureNames, injectFixture, loadFixture, TEST_MESH, TEST_VERSION, TESTDATA, type GoldenResult } from './testdata/fixtures.js';

// Golden files: testdata/NAME.yaml is a realistic manifest; NAME.patch.json is
// what buildPodPatch makes of its pod template (the patch and warnings, the
// skip, or the refusal), and NAME.injected.yaml the manifest with the patch
// applied, for people to read. Refresh with:
//   UPDATE_GOLDEN=1 npx mocha --no-config --import=tsx webhook/patch.test.ts
const update = process.env.UPDATE_GOLDEN === '1';

function golden(file: string, got: string): void {
  const url = new URL(file, TESTDATA);
  if (update) writeFileSync(url, got);
  assert.ok(existsSync(url), `testdata/${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
  assert.equal(got, readFileSync(url, 'utf8'), `testdata/${file} changed; if intended, run with UPDATE_GOLDEN=1`);
}

describe('buildPodPatch golden files', function () {
  const names = fixtureNames();

  it('has the representative workloads and every bad override', function () {
    for (const name of [
      'deployment-two-containers',
      'grpc-probes',
      'pod-with-init-containers',
      'job',
      'statefulset',
      'cronjob',
      'host-network',
      'already-injected',
      'other-mesh-istio',
      'other-mesh-linkerd',
      'bad-skip-inbound-ports',
      'bad-skip-outbound-ports',
      'bad-skip-outbound-cidrs',
      'bad-opaque-ports',
      'bad-proxy-cpu-request',
      'bad-proxy-memory-request',
      'bad-proxy-memory-limit',
      'bad-proxy-log-level',
      'proxy-uid',
      'proxy-uid-allowed',
    ]) {
      assert.ok(names.includes(name), `testdata/${name}.yaml`);
    }
  });

  for (const name of names) {
    it(`${name}.yaml -> ${name}.patch.json`, function () {
      const fixture = loadFixture(name);
      const result = injectFixture(fixture);
      golden(`${name}.patch.json`, JSON.stringify(result, null, 2) + '\n');
      const injectedFile = new URL(`${name}.injected.yaml`, TESTDATA);
      if (result.injected) {
        applyPodPatch(fixture.pod, result.injected.patch);
        golden(`${name}.injected.yaml`, stringify(fixture.document, { lineWidth: 0, version: '1.1' }));
      } else if (update && existsSync(injectedFile)) {
        rmSync(injectedFile);
      }
    });
  }
});

describe('buildPodPatch', function () {
  const injected = (name: string): NonNullable<GoldenResult['injected']> => {
    const r = injectFixture(loadFixture(name));
    assert.ok(r.injected, JSON.stringify(r));
    return r.injected;
  };
  const patchedPod = (name: string): Record<string, any> => {
    const f = loadFixture(name);
    applyPodPatch(f.pod, injected(name).patch);
    return f.pod;
  };

  it('is idempotent: the injected pod is skipped as already injected and stays the same', function () {
    for (const name of ['deployment-two-containers', 'pod-with-init-containers', 'job', 'statefulset']) {
      const pod = patchedPod(name);
      const before = structuredClone(pod);
      const again = buildPodPatch(pod, { name: 'default' }, TEST_MESH, TEST_VERSION);
      assert.equal(again.kind, 'skipped');
      assert.equal(again.kind === 'skipped' && again.skip.reason, 'already-injected');
      assert.deepEqual(pod, before);
    }
  });

  it('does not change its input', function () {
    const f = loadFixture('deployment-two-containers');
    const before = structuredClone(f.pod);
    buildPodPatch(f.pod, { name: f.namespace }, TEST_MESH, TEST_VERSION);
    assert.deepEqual(f.pod, before);
  });

  it('puts tsmesh-init then tsmesh-proxy before the user init containers', function () {
    const names = patchedPod('pod-with-init-containers').spec.initContainers.map((c: { name: string }) => c.name);
    assert.deepEqual(names, ['tsmesh-init', 'tsmesh-proxy', 'wait-for-db', 'migrate']);
  });

  it('makes the proxy a native sidecar that gates startup on /ready, as uid 1337 on a read-only root', function () {
    const proxy = patchedPod('job').spec.initContainers[1];
    assert.equal(proxy.name, 'tsmesh-proxy');
    assert.equal(proxy.restartPolicy, 'Always');
    assert.deepEqual(proxy.startupProbe.httpGet, { path: '/ready', port: 15020, scheme: 'HTTP' });
    assert.equal(proxy.securityContext.runAsUser, 1337);
    assert.equal(proxy.securityContext.runAsGroup, 1337);
    assert.equal(proxy.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(proxy.securityContext.capabilities, { drop: ['ALL'] });
    assert.deepEqual(proxy.args, ['proxy']);
  });

  it('gives the proxy every variable of the environment contract it needs, by PROXY_ENV name', function () {
    const proxy = patchedPod('deployment-two-containers').spec.initContainers[1];
    const env = new Map<string, any>(proxy.env.map((e: { name: string }) => [e.name, e]));
    for (const key of ['POD_NAME', 'POD_NAMESPACE', 'POD_IP', 'SERVICE_ACCOUNT', 'TRUST_DOMAIN', 'CONTROL_PLANE_ADDRESS', 'TOKEN_PATH', 'TRUST_BUNDLE_PATH', 'LOG_LEVEL', 'APP_PROBES'] as const) {
      assert.ok(env.has(PROXY_ENV[key]), `missing ${PROXY_ENV[key]}`);
    }
    assert.equal(env.get(PROXY_ENV.SERVICE_ACCOUNT).valueFrom.fieldRef.fieldPath, 'spec.serviceAccountName');
    assert.equal(env.get(PROXY_ENV.POD_IP).valueFrom.fieldRef.fieldPath, 'status.podIP');
  });

  it('passes init only flags that tsmesh init knows, and they parse', function () {
    const init = patchedPod('job').spec.initContainers[0];
    assert.equal(init.args[0], 'init');
    const flags: Record<string, string> = {};
    for (const arg of init.args.slice(1) as string[]) {
      const m = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
      assert.ok(m, arg);
      assert.ok(m[1]! in INIT_FLAGS, `${m[1]} is not an INIT_FLAGS flag`);
      flags[m[1]!] = m[2]!;
    }
    const parsed = parseInitOptions(flags).redirect;
    assert.deepEqual(parsed.skipOutboundPorts, [{ first: 3306, last: 3306 }]);
    assert.deepEqual(
      parsed.skipOutboundCidrs.map((c) => `${c.address}/${c.prefix}`),
      ['192.168.10.0/24', '10.40.0.7/32'],
    );
    assert.equal(parsed.proxyUid, 1337);
  });

  it('rewrites probes to /app-health on 15020 and keeps the originals, named ports resolved, for the proxy', function () {
    const pod = patchedPod('deployment-two-containers');
    const [web, exporter] = pod.spec.containers;
    assert.deepEqual(web.livenessProbe, { httpGet: { path: '/app-health/web/livez', port: 15020, scheme: 'HTTP' }, initialDelaySeconds: 5, periodSeconds: 10 });
    assert.equal(web.startupProbe.httpGet.path, '/app-health/web/startupz');
    assert.equal(web.startupProbe.failureThreshold, 30);
    assert.deepEqual(exporter.livenessProbe, { exec: { command: ['/bin/exporter', '-check'] } });
    const proxy = pod.spec.initContainers[1];
    const probes = JSON.parse(proxy.env.find((e: { name: string }) => e.name === PROXY_ENV.APP_PROBES).value);
    assert.deepEqual(probes, {
      '/app-health/web/livez': { httpGet: { path: '/healthz', port: 8080 } },
      '/app-health/web/readyz': { httpGet: { path: '/ready', port: 8443, scheme: 'HTTPS', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] }, timeoutSeconds: 2 },
      '/app-health/web/startupz': { tcpSocket: { port: 8080 } },
      '/app-health/exporter/readyz': { tcpSocket: { port: 9102 } },
    });
  });

  it('rewrites gRPC probes like the others, the service name and timeout kept for the proxy', function () {
    const pod = patchedPod('grpc-probes');
    const [orders] = pod.spec.containers;
    assert.deepEqual(orders.livenessProbe, { httpGet: { path: '/app-health/orders/livez', port: 15020, scheme: 'HTTP' }, periodSeconds: 10 });
    assert.deepEqual(orders.readinessProbe, { httpGet: { path: '/app-health/orders/readyz', port: 15020, scheme: 'HTTP' }, timeoutSeconds: 2, failureThreshold: 3 });
    assert.equal(orders.startupProbe.httpGet.path, '/app-health/orders/startupz');
    const proxy = pod.spec.initContainers[1];
    assert.deepEqual(JSON.parse(proxy.env.find((e: { name: string }) => e.name === PROXY_ENV.APP_PROBES).value), {
      '/app-health/orders/livez': { grpc: { port: 50051 } },
      '/app-health/orders/readyz': { grpc: { port: 50051, service: 'orders.v1.Orders' }, timeoutSeconds: 2 },
      '/app-health/orders/startupz': { grpc: { port: 50051 } },
    });
  });

  it('adds the Prometheus annotations unless the pod has its own', function () {
    const own = patchedPod('statefulset').metadata.annotations;
    assert.equal(own['prometheus.io/port'], '9121');
    assert.equal(own['prometheus.io/path'], undefined);
    const added = patchedPod('job').metadata.annotations;
    assert.deepEqual([added['prometheus.io/scrape'], added['prometheus.io/port'], added['prometheus.io/path']], ['true', '15020', '/metrics']);
    assert.deepEqual(JSON.parse(added[STATUS_ANNOTATION]), {
      version: TEST_VERSION,
      containers: ['tsmesh-init', 'tsmesh-proxy'],
      volumes: ['tsmesh-token', 'tsmesh-trust-bundle', 'tsmesh-xtables-lock'],
    });
  });

  it('takes resources from the overrides, else the mesh defaults', function () {
    const [, proxy] = patchedPod('statefulset').spec.initContainers;
    assert.deepEqual(proxy.resources, { requests: { cpu: '200m', memory: '128Mi' }, limits: { memory: '512Mi' } });
    const [, plain] = patchedPod('job').spec.initContainers;
    assert.deepEqual(plain.resources, { requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '256Mi' } });
  });

  it('skips a pod in an unlabelled namespace unless the pod asks for injection', function () {
    const pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'x' }] } };
    const skipped = buildPodPatch(pod, { name: 'plain', labels: {} }, TEST_MESH);
    assert.equal(skipped.kind === 'skipped' && skipped.skip.reason, 'namespace-not-enabled');
    const asked = { ...pod, metadata: { name: 'p', annotations: { 'tsmesh.io/inject': 'enabled' } } };
    assert.equal(buildPodPatch(asked, { name: 'plain', labels: {} }, TEST_MESH).kind, 'injected');
    assert.equal(buildPodPatch(pod, { name: 'meshed', labels: { 'tsmesh.io/inject': 'enabled' } }, TEST_MESH).kind, 'injected');
  });

  it('skips the control-plane namespace, which is the one control/plane.ts uses', function () {
    assert.equal(MESH_NAMESPACE, MESH_NAMESPACE);
    const r = buildPodPatch({ spec: { containers: [{ name: 'a', image: 'x' }] } }, { name: MESH_NAMESPACE }, TEST_MESH);
    assert.equal(r.kind === 'skipped' && r.skip.reason, 'system-namespace');
  });

  it('skips a pod opted out by label', function () {
    const r = buildPodPatch({ metadata: { labels: { 'tsmesh.io/inject': 'disabled' } }, spec: { containers: [{ name: 'a', image: 'x' }] } }, { name: 'default' }, TEST_MESH);
    assert.equal(r.kind === 'skipped' && r.skip.message, 'the pod opted out with label tsmesh.io/inject: disabled');
  });

  it('refuses what is not a pod, and container or volume names the mesh reserves', function () {
    const refused = (object: unknown): string => {
      try {
        buildPodPatch(object, { name: 'default' }, TEST_MESH);
      } catch (e) {
        return (e as Error).message;
      }
      return 'not refused';
    };
    assert.match(refused('a string'), /not a pod/);
    assert.match(refused({ metadata: {} }), /no spec/);
    assert.match(refused({ spec: { containers: [] } }), /spec.containers/);
    assert.match(refused({ metadata: { annotations: { 'tsmesh.io/skip-inbound-ports': 8080 } }, spec: { containers: [{ name: 'a' }] } }), /quote it \("8080"\)/);
    assert.match(refused({ spec: { containers: [{ name: 'tsmesh-proxy' }] } }), /reserved/);
    assert.match(refused({ spec: { containers: [{ name: 'a' }], volumes: [{ name: 'tsmesh-token' }] } }), /volume name tsmesh-token is reserved/);
  });

  describe("containers running as the proxy's uid or gid", function () {
    const outcome = (spec: object, annotations?: Record<string, string>): string => {
      try {
        const r = buildPodPatch({ metadata: { annotations: annotations ?? {} }, spec }, { name: 'default' }, TEST_MESH);
        return r.kind === 'injected' ? `injected: ${r.warnings.join(' | ')}` : `skipped: ${r.skip.message}`;
      } catch (e) {
        return e instanceof InjectionRefused ? `refused ${e.code}: ${e.message}` : `threw ${String(e)}`;
      }
    };

    it('refuses an app container with the proxy\'s uid, its own or the pod\'s, saying what to change', function () {
      const r = outcome({ securityContext: { runAsUser: 1337 }, containers: [{ name: 'a' }, { name: 'b', securityContext: { runAsUser: 1000 } }] });
      assert.match(r, /^refused proxy-uid: container a runs as uid 1337 \(spec\.securityContext\.runAsUser\): /);
      assert.doesNotMatch(r, /container b/);
      assert.match(r, /Set runAsUser and runAsGroup to another id \(for example 1000\)/);
      assert.match(r, /annotate the pod tsmesh\.io\/allow-proxy-uid: "true"$/);
      assert.match(outcome({ containers: [{ name: 'a', securityContext: { runAsUser: 1337 } }] }), /^refused proxy-uid: container a runs as uid 1337 \(spec\.containers\[0\]\.securityContext\.runAsUser\)/);
    });

    it('refuses the proxy\'s gid, and init containers too, each named', function () {
      const r = outcome({
        securityContext: { runAsGroup: 1337 },
        initContainers: [{ name: 'setup', securityContext: { runAsUser: 1337, runAsGroup: 2000 } }],
        containers: [{ name: 'app' }],
      });
      assert.match(r, /^refused proxy-uid: init container setup runs as uid 1337 \(spec\.initContainers\[0\]\.securityContext\.runAsUser\); container app runs as gid 1337 \(spec\.securityContext\.runAsGroup\): /);
    });

    it('admits a pod whose containers override the pod\'s 1337, and one that sets no ids', function () {
      assert.equal(outcome({ securityContext: { runAsUser: 1337, runAsGroup: 1337 }, containers: [{ name: 'a', securityContext: { runAsUser: 1000, runAsGroup: 1000 } }] }), 'injected: ');
      assert.equal(outcome({ containers: [{ name: 'a' }] }), 'injected: ');
    });

    it('admits it with a warning per container under tsmesh.io/allow-proxy-uid: "true"; refuses a value that is not true or false', function () {
      const spec = { initContainers: [{ name: 'seed', securityContext: { runAsUser: 1337 } }], containers: [{ name: 'app' }] };
      assert.equal(
        outcome(spec, { 'tsmesh.io/allow-proxy-uid': 'true' }),
        "injected: init container seed runs as uid 1337 (spec.initContainers[0].securityContext.runAsUser), the proxy's: its traffic is not redirected and bypasses mTLS (allowed by tsmesh.io/allow-proxy-uid)",
      );
      assert.match(outcome(spec, { 'tsmesh.io/allow-proxy-uid': 'false' }), /^refused proxy-uid: /);
      assert.match(outcome(spec, { 'tsmesh.io/allow-proxy-uid': 'yes' }), /^refused bad-override: annotation tsmesh\.io\/allow-proxy-uid: "yes" is not valid; expected "true" or "false"/);
    });
  });

  it('adds metadata, annotations and volumes where the pod has none', function () {
    const r = buildPodPatch({ spec: { containers: [{ name: 'a', image: 'x' }] } }, { name: 'default' }, TEST_MESH, TEST_VERSION);
    assert.equal(r.kind, 'injected');
    if (r.kind !== 'injected') return;
    assert.deepEqual(r.patch.map((op) => `${op.op} ${op.path}`), ['add /spec/initContainers', 'add /spec/volumes', 'add /metadata']);
  });
});
