// What kind/up.sh and kind/e2e.sh rely on, tested here: the scripts cannot
// run on a machine without a Docker engine, so each piece they use is
// checked on its own. The scripts pass shellcheck; the cluster config asks
// for Kubernetes with native sidecars; the demo's manifests are accepted by
// a real kube-apiserver once tsmesh is installed (the TrafficPolicy by its
// CRD's schema) and are injectable; the demo app answers as e2e.sh expects;
// e2e.sh's metric patterns match the proxy's exposition.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { applyInstall } from '../../install/apply.js';
import { generateCa } from '../../install/ca.js';
import { Kube, type KubeObject } from '../../install/kube.js';
import { renderInstall } from '../../install/render.js';
import { createProxyMetrics } from '../../proxy/metrics.js';
import { freePort } from '../../lib/ports.js';
import { eventually, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const KIND = join(ROOT, 'kind');
const MAIN = join(ROOT, 'cli', 'main.ts');
const IMAGE = 'tsmesh:kind';
const onPath = (cmd: string): boolean => (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, cmd)));

function demoText(): string {
  return readFileSync(join(KIND, 'demo.yaml'), 'utf8').replaceAll('TSMESH_IMAGE', IMAGE);
}
function demoObjects(): KubeObject[] {
  return parseAllDocuments(demoText(), { version: '1.1' })
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
}

describe('kind/', function () {
  this.timeout(120_000);

  it('the scripts pass shellcheck (kind/*.sh)', function () {
    if (!onPath('shellcheck')) {
      console.log('      skipped: shellcheck is not installed (apt-get install shellcheck)');
      this.skip();
    }
    const r = spawnSync('shellcheck', ['-x', 'up.sh', 'e2e.sh', 'down.sh', 'common.sh'], { cwd: KIND, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('the cluster runs Kubernetes 1.29 or later on every node (native sidecars)', function () {
    const cfg = parseAllDocuments(readFileSync(join(KIND, 'kind-config.yaml'), 'utf8'))[0]!.toJS() as { kind: string; apiVersion: string; nodes: { role: string; image: string }[] };
    assert.deepEqual([cfg.kind, cfg.apiVersion], ['Cluster', 'kind.x-k8s.io/v1alpha4']);
    assert.ok(cfg.nodes.length >= 2, 'two nodes, so the control plane\'s replicas spread');
    for (const n of cfg.nodes) {
      const m = /^kindest\/node:v1\.(\d+)\.\d+(@sha256:[0-9a-f]{64})?$/.exec(n.image);
      assert.ok(m && Number(m[1]) >= 29, n.image);
    }
  });

  it('up.sh loads the image the demo names, and installs with it', function () {
    const common = readFileSync(join(KIND, 'common.sh'), 'utf8');
    const up = readFileSync(join(KIND, 'up.sh'), 'utf8');
    assert.match(common, /IMAGE="\$\{TSMESH_IMAGE:-tsmesh:kind\}"/);
    assert.match(common, /sed "s\|TSMESH_IMAGE\|\$IMAGE\|g" "\$KIND_DIR\/demo\.yaml"/);
    assert.match(up, /^deploy_demo$/m);
    assert.match(up, /kind load docker-image "\$IMAGE"/);
    assert.match(up, /tsmesh install --context "\$CONTEXT" --image "\$IMAGE" --wait/);
    assert.ok(readFileSync(join(KIND, 'demo.yaml'), 'utf8').includes('image: TSMESH_IMAGE'));
  });

  it('deploy_demo creates what a Deployment mounts before the Deployment: the namespace, ConfigMap demo-app, then the rest', function () {
    const common = readFileSync(join(KIND, 'common.sh'), 'utf8');
    const body = /^deploy_demo\(\) \{\n([\s\S]*?)\n\}/m.exec(common)?.[1] ?? '';
    const at = (re: RegExp): number => {
      const m = re.exec(body);
      assert.ok(m, `deploy_demo has ${re}`);
      return m.index;
    };
    const namespace = at(/awk '\/\^---\$\/ \{ exit \} \{ print \}' <<<"\$demo" \| kc apply -f -/);
    const configMap = at(/create configmap demo-app/);
    const rest = at(/kc apply -f - <<<"\$demo"/);
    assert.ok(namespace < configMap && configMap < rest);
    assert.equal(demoObjects()[0]!.kind, 'Namespace', 'demo.yaml\'s first document is the namespace');
  });

  it('the demo sends 10% of the calls to backend to v2', function () {
    const policy = demoObjects().find((o) => o.kind === 'TrafficPolicy')! as KubeObject & { spec: { targetRef: { name: string }; routes: { match?: unknown; backends: { service: string; weight: number }[] }[] } };
    assert.equal(policy.spec.targetRef.name, 'backend');
    const route = policy.spec.routes[0]!;
    assert.equal(route.match, undefined, 'the route takes every request');
    const total = route.backends.reduce((s, b) => s + b.weight, 0);
    assert.deepEqual(route.backends.map((b) => [b.service, b.weight / total]), [['backend-v1', 0.9], ['backend-v2', 0.1]]);
  });

  it('tsmesh inject meshes every demo Deployment and moves its probes to the proxy', function () {
    const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'inject', '--image', IMAGE], { input: demoText(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = parseAllDocuments(r.stdout, { version: '1.1' }).map((d) => d.toJS() as Record<string, any>);
    const deployments = out.filter((o) => o['kind'] === 'Deployment');
    assert.equal(deployments.length, 3);
    for (const d of deployments) {
      const spec = d['spec']['template']['spec'];
      assert.deepEqual(spec['initContainers'].map((c: { name: string }) => c.name), ['tsmesh-init', 'tsmesh-proxy'], d['metadata']['name']);
      assert.equal(spec['containers'][0]['readinessProbe']['httpGet']['port'], 15020);
    }
  });

  describe('the demo on a real kube-apiserver with tsmesh installed', function () {
    let server: ApiServer | undefined;
    let kube: Kube;
    before(async function () {
      skipWithoutApiServer(this);
      server = await startApiServer();
      kube = new Kube(server.kc);
      // The webhook is left out: this tier has no control plane to answer it (check.test.ts has one).
      const ca = await generateCa('cluster.local');
      const rendered = renderInstall({ image: IMAGE, ca });
      rendered.objects = rendered.objects.filter((o) => o.object.kind !== 'MutatingWebhookConfiguration');
      await applyInstall(kube, rendered, ca, () => {});
      await eventually(() => kube.get('/apis/tsmesh.io/v1alpha1/trafficpolicies'), 20_000, 'the TrafficPolicy kind to be served');
    });
    after(async () => {
      await server?.stop();
    });

    it('applies (server side) without a warning, the TrafficPolicy checked by its CRD\'s schema', async function () {
      for (const o of demoObjects()) {
        const res = await kube.apply(o, { fieldManager: 'kubectl' });
        assert.deepEqual(res.warnings, [], `${o.kind} ${o.metadata.name}`);
      }
      const policy = await kube.get<{ spec: { routes: unknown[] } }>('/apis/tsmesh.io/v1alpha1/namespaces/tsmesh-demo/trafficpolicies/backend');
      assert.equal(policy?.spec.routes.length, 1);
      const bad = demoObjects().find((o) => o.kind === 'TrafficPolicy')! as KubeObject & { spec: { routes: { backends: { weight: number }[] }[] } };
      bad.spec.routes[0]!.backends[0]!.weight = -1;
      await assert.rejects(kube.apply(bad, { dryRun: true }), /weight/);
    });
  });

  describe('the demo app (kind/demo-app.mjs), on loopback', function () {
    const procs: ReturnType<typeof spawn>[] = [];
    const run = async (env: Record<string, string>): Promise<number> => {
      const port = await freePort();
      const p = spawn(process.execPath, [join(KIND, 'demo-app.mjs')], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(p);
      await once(p.stdout!, 'data');
      return port;
    };
    after(async () => {
      for (const p of procs) {
        p.kill('SIGTERM');
        if (p.exitCode === null) await once(p, 'exit');
      }
    });

    it('the backend says its version; the frontend calls it, once or N times (/split), as e2e.sh reads it', async function () {
      const v2 = await run({ ROLE: 'backend', VERSION: 'v2' });
      const backend = (await (await fetch(`http://127.0.0.1:${v2}/`)).json()) as Record<string, unknown>;
      assert.equal(backend['version'], 'v2');
      assert.deepEqual(await (await fetch(`http://127.0.0.1:${v2}/healthz`)).json(), { ok: true });
      const frontend = await run({ ROLE: 'frontend', BACKEND_URL: `http://127.0.0.1:${v2}/` });
      const one = (await (await fetch(`http://127.0.0.1:${frontend}/`)).json()) as { backend: { version: string } };
      assert.equal(one.backend.version, 'v2');
      const split = await (await fetch(`http://127.0.0.1:${frontend}/split?n=25`)).text();
      // e2e.sh's parse of the answer.
      const r = spawnSync('node', ['-e', 'const c = JSON.parse(process.argv[1]); console.log(`${c.v1 ?? 0} ${c.v2 ?? 0} ${c.errors ?? 0}`);', split], { encoding: 'utf8' });
      assert.equal(r.stdout.trim(), '0 25 0');
    });

    it('counts failed calls as errors', async function () {
      const frontend = await run({ ROLE: 'frontend', BACKEND_URL: `http://127.0.0.1:${await freePort()}/` });
      const split = (await (await fetch(`http://127.0.0.1:${frontend}/split?n=3`)).json()) as { errors: number; requests: number };
      assert.deepEqual([split.requests, split.errors], [3, 3]);
    });
  });

  describe('e2e.sh\'s checks (its helpers, sourced without running main)', function () {
    /** Runs `script` in bash after sourcing e2e.sh; the exit status. */
    const e2e = (script: string, env: Record<string, string> = {}): { status: number | null; out: string } => {
      const r = spawnSync('bash', ['-c', `. ${JSON.stringify(join(KIND, 'e2e.sh'))}\n${script}`], { env: { ...process.env, ...env }, encoding: 'utf8' });
      return { status: r.status, out: r.stdout + r.stderr };
    };

    it('a pod passes with tsmesh-init, tsmesh-proxy and Ready, and only then', function () {
      assert.equal(e2e('pod_line_ok "web-1 tsmesh-init tsmesh-proxy ready=True"').status, 0);
      assert.equal(e2e('pod_line_ok "web-1 tsmesh-init tsmesh-proxy my-init ready=True"').status, 0);
      assert.notEqual(e2e('pod_line_ok "web-1 tsmesh-init tsmesh-proxy ready=False"').status, 0);
      assert.notEqual(e2e('pod_line_ok "web-1  ready=True"').status, 0);
      assert.notEqual(e2e('pod_line_ok "web-1 tsmesh-init ready=True"').status, 0);
    });

    it('reads the frontend\'s /split answer, and takes 5% to 15% as "about 10%"', function () {
      assert.equal(e2e('split_counts \'{"requests":1000,"errors":0,"v1":897,"v2":103}\'').out.trim(), '897 103 0');
      assert.equal(e2e('split_counts \'{"requests":3,"errors":3}\'').out.trim(), '0 0 3');
      for (const [v2, ok] of [[50, true], [100, true], [150, true], [49, false], [151, false], [0, false]] as const) assert.equal(e2e(`share_ok ${v2} 1000`).status === 0, ok, `${v2} of 1000`);
    });

    it('finds mTLS requests between the two identities in the proxy\'s real exposition, and not plain ones', async function () {
      const metrics = createProxyMetrics();
      const frontend = 'spiffe://cluster.local/ns/tsmesh-demo/sa/frontend';
      const backend = 'spiffe://cluster.local/ns/tsmesh-demo/sa/backend';
      for (const direction of ['outbound', 'inbound'] as const)
        metrics.requests.labels({ direction, source_identity: frontend, destination_identity: backend, destination_service: 'backend-v2.tsmesh-demo.svc.cluster.local:8080', route: 'default', response_code: '200', grpc_status: '', tls: 'true' }).inc();
      const text = await metrics.registry.metrics();
      const both = 'mtls_requests outbound "$FRONTEND_ID" "$BACKEND_ID" <<<"$METRICS" && mtls_requests inbound "$FRONTEND_ID" "$BACKEND_ID" <<<"$METRICS"';
      assert.equal(e2e(both, { METRICS: text }).status, 0, text);
      assert.notEqual(e2e(both, { METRICS: text.replaceAll('tls="true"', 'tls="false"') }).status, 0, 'plain-text traffic does not pass');
      assert.notEqual(e2e(both, { METRICS: text.replaceAll('/sa/frontend', '/sa/other') }).status, 0, 'another caller does not pass');
    });
  });
});
