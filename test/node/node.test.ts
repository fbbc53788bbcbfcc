// The real-node tier: tsmesh where its users run it, on a kubelet. A
// one-node cluster (test/node/node.sh: etcd, kube-apiserver, controller
// manager, scheduler, containerd + runc + the CNI bridge, kubelet,
// kube-proxy, CoreDNS) is brought up in namespaces of its own; the repo's CLI
// installs the mesh with its kubeconfig; the kind demo runs meshed; the
// unmodified kind/e2e.sh checks it; then the lifecycle: rolling restarts under
// load, a Job, a killed proxy, uninstall. Skipped, saying why, when the
// machine cannot (nodeTier()).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { REPO, TSMESH_IMAGE, assertHostAsBefore, hostState, injectorReady, kubectl, kubectlPath, run, skipWithoutNode, sleep, startNode, stopLeavingNothing, tsmeshCli, waitFor, type HostState, type TestNode } from './node.js';

const DEMO_NS = 'tsmesh-demo';
const CONTEXT = 'tsmesh-node';
const TD = 'cluster.local';
const FRONTEND_ID = `spiffe://${TD}/ns/${DEMO_NS}/sa/frontend`;
const BACKEND_ID = `spiffe://${TD}/ns/${DEMO_NS}/sa/backend`;
const CLI = join(REPO, 'dist', 'cli', 'main.js');

interface Pod {
  metadata: { name: string; labels?: Record<string, string>; uid: string; deletionTimestamp?: string };
  spec: { initContainers?: { name: string; restartPolicy?: string }[]; containers: { name: string }[] };
  status: {
    phase: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    initContainerStatuses?: { name: string; ready: boolean; started?: boolean; restartCount: number; state: { terminated?: { exitCode: number } } }[];
    containerStatuses?: { name: string; ready: boolean; restartCount: number }[];
  };
}
interface KEvent {
  reason: string;
  message: string;
  type: string;
  involvedObject: { kind: string; name: string; fieldPath?: string };
  count?: number;
}

const timings: [string, number][] = [];
function timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  return fn().finally(() => timings.push([what, Date.now() - t0]));
}

describe('real node: tsmesh on a kubelet (test/node)', function () {
  this.timeout(900_000);
  let node: TestNode | undefined;
  let env: NodeJS.ProcessEnv;
  let host: HostState;

  const kc = (args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> => kubectl(node!, args, opts);
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kc([...args, '-o', 'json'])) as T;
  const tsmesh = (args: string[], timeoutMs?: number): Promise<string> => tsmeshCli(node!, args, timeoutMs);
  const pods = async (ns: string, selector: string): Promise<Pod[]> => (await json<{ items: Pod[] }>(['-n', ns, 'get', 'pods', '-l', selector])).items;
  /** Runs `node -e SCRIPT` in the app container of a Ready frontend pod that is not terminating (the demo app's image has node). */
  const inFrontend = async (script: string, timeoutMs = 120_000): Promise<string> => {
    const ready = (await pods(DEMO_NS, 'app=frontend')).find((p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    assert.ok(ready, 'a Ready frontend pod');
    return kc(['-n', DEMO_NS, 'exec', ready.metadata.name, '-c', 'app', '--', 'node', '-e', script], { timeoutMs });
  };
  const split = async (n: number): Promise<{ v1?: number; v2?: number; errors: number; lastError?: string }> =>
    JSON.parse(await inFrontend(`fetch('http://127.0.0.1:8080/split?n=${n}').then(r => r.text()).then(t => process.stdout.write(t))`)) as never;
  const metrics = (ns: string, pod: string): Promise<string> => kc(['get', '--raw', `/api/v1/namespaces/${ns}/pods/${pod}:15020/proxy/metrics`]);

  before(async function () {
    skipWithoutNode(this);
    host = await hostState();
    const t0 = Date.now();
    node = await startNode();
    env = node.env;
    console.log(`      node Ready with DNS in ${Date.now() - t0} ms (${Object.entries(node.timings).map(([k, v]) => `${k} ${v} ms`).join(', ')}); state in ${node.dir}`);
  });

  after(async function () {
    if (!node) return;
    await node.stop();
    console.log(`      timings: ${timings.map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}`);
  });

  it('the node leaves the host\'s mounts, links, sysctls and iptables rules as they were', async function () {
    assertHostAsBefore(host, await hostState());
  });

  it('tsmesh install (the CLI, with the node\'s kubeconfig) brings the control plane up', async function () {
    const out = await timed('tsmesh install', () => tsmesh(['install', '--image', TSMESH_IMAGE, '--wait', '180s']));
    assert.match(out, /tsmesh-control-plane/);
    const deploy = await json<{ status: { availableReplicas?: number; replicas?: number } }>(['-n', 'tsmesh-system', 'get', 'deploy', 'tsmesh-control-plane']);
    assert.equal(deploy.status.availableReplicas, deploy.status.replicas);
    // The control plane sets the injector's caBundle when it starts.
    await timed('injector caBundle', () => injectorReady(node!));
  });

  it('the kind demo in a labelled namespace: every pod 2/2 Ready with tsmesh-init and the native sidecar tsmesh-proxy', async function () {
    await timed('demo deployed', () => run('bash', ['-c', `. kind/common.sh && deploy_demo`], { env: { ...env, TSMESH_KUBE_CONTEXT: CONTEXT, TSMESH_IMAGE }, timeoutMs: 300_000 }));
    const ns = await json<{ metadata: { labels: Record<string, string> } }>(['get', 'namespace', DEMO_NS]);
    assert.equal(ns.metadata.labels['tsmesh.io/inject'], 'enabled');
    const list = await pods(DEMO_NS, 'app in (frontend,backend)');
    assert.equal(list.length, 4, list.map((p) => p.metadata.name).join(' '));
    for (const p of list) {
      const name = p.metadata.name;
      assert.deepEqual(p.spec.initContainers?.map((c) => [c.name, c.restartPolicy]), [['tsmesh-init', undefined], ['tsmesh-proxy', 'Always']], name);
      const init = p.status.initContainerStatuses?.find((s) => s.name === 'tsmesh-init');
      assert.equal(init?.state.terminated?.exitCode, 0, `${name}: tsmesh-init exited 0`);
      const proxy = p.status.initContainerStatuses?.find((s) => s.name === 'tsmesh-proxy');
      assert.ok(proxy?.ready && proxy.started, `${name}: the sidecar is started and ready`);
      const app = p.status.containerStatuses?.find((s) => s.name === 'app');
      assert.ok(app?.ready, `${name}: app ready`);
      assert.equal(p.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True', name);
    }
    // READY as kubectl counts it: the app and the sidecar.
    const table = await kc(['-n', DEMO_NS, 'get', 'pods', '-l', 'app in (frontend,backend)', '--no-headers']);
    for (const line of table.trim().split('\n')) assert.match(line, /^\S+\s+2\/2\s+Running\s/, line);
  });

  it('the init container\'s rules are in the pod\'s network namespace, not the node\'s', async function () {
    const [pod] = await pods(DEMO_NS, 'app=frontend');
    const pid = await sandboxPid(node!, pod!.metadata.uid);
    const rules = await run('nsenter', ['--target', String(pid), '--net', 'iptables-save', '-t', 'nat']);
    assert.match(rules, /^-A OUTPUT -p tcp -m comment --comment "tsmesh\/outbound" -j TSMESH_OUTPUT$/m);
    assert.match(rules, /^-A PREROUTING -p tcp -m comment --comment "tsmesh\/inbound" -j TSMESH_INBOUND$/m);
    assert.match(rules, /-j REDIRECT --to-ports 15001$/m);
    assert.match(rules, /-j REDIRECT --to-ports 15006$/m);
    assert.match(rules, /--uid-owner 1337 .*-j RETURN$/m);
    const nodeRules = await run(node!.enter[0]!, [...node!.enter.slice(1), 'iptables-save', '-t', 'nat']);
    assert.doesNotMatch(nodeRules, /TSMESH_/, 'the node\'s own tables hold no tsmesh chain');
    assert.match(nodeRules, /KUBE-SERVICES/, 'kube-proxy\'s rules are in the node\'s namespace');
  });

  it('calls go over mTLS: both SPIFFE IDs in the proxies\' metrics, and 10% reach v2', async function () {
    const calls = 1000;
    const c = await timed('1000 calls', () => split(calls));
    assert.equal(c.errors, 0, c.lastError);
    assert.equal((c.v1 ?? 0) + (c.v2 ?? 0), calls);
    // 10% of 1000: 100, standard deviation about 9.5; 50 to 150 fails by chance less than once in a million runs.
    assert.ok((c.v2 ?? 0) >= 50 && (c.v2 ?? 0) <= 150, `v2 got ${c.v2} of ${calls}`);
    const [frontend] = await pods(DEMO_NS, 'app=frontend');
    const out = await metrics(DEMO_NS, frontend!.metadata.name);
    assert.match(out, new RegExp(`^tsmesh_requests_total\\{direction="outbound",source_identity="${FRONTEND_ID}",destination_identity="${BACKEND_ID}",[^}]*tls="true"[,}]`, 'm'));
    for (const b of await pods(DEMO_NS, 'app=backend')) {
      const m = await metrics(DEMO_NS, b.metadata.name);
      assert.match(m, new RegExp(`^tsmesh_requests_total\\{direction="inbound",source_identity="${FRONTEND_ID}",destination_identity="${BACKEND_ID}",[^}]*tls="true"[,}]`, 'm'), b.metadata.name);
    }
  });

  it('tsmesh check is healthy, and tsmesh stat shows the demo\'s workloads', async function () {
    const check = await timed('tsmesh check', () => tsmesh(['check', '-o', 'json']));
    const lines = JSON.parse(check) as { section: string; status: 'ok' | 'warn' | 'fail'; message: string; fix?: string }[];
    assert.ok(lines.length > 0, check);
    assert.deepEqual(lines.filter((l) => l.status === 'fail').map((l) => `${l.section}: ${l.message}`), []);
    assert.ok(lines.some((l) => l.section === 'Data plane' && l.status === 'ok'), `the data plane checked:\n${check}`);
    const warnings = lines.filter((l) => l.status === 'warn');
    if (warnings.length > 0) console.log(`      tsmesh check warnings: ${warnings.map((l) => l.message).join('; ')}`);
    assert.match(await tsmesh(['check']), /^tsmesh check: healthy \(/m);
    // stat reads the control plane's admin port: port-forward it, as the CLI's usage says.
    const pf = spawn(kubectlPath(), ['-n', 'tsmesh-system', 'port-forward', 'deploy/tsmesh-control-plane', ':15014'], { env: node!.env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((resolveP, reject) => {
        let text = '';
        pf.stdout.on('data', (d: Buffer) => {
          text += d.toString();
          const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
          if (m) resolveP(Number(m[1]));
        });
        pf.on('exit', (code) => reject(new Error(`kubectl port-forward exited ${code}`)));
        setTimeout(() => reject(new Error('kubectl port-forward did not start')), 30_000);
      });
      interface Workload { name: string; namespace: string; meshedPods: number; pods: number; requests: number; rps: number; successRate: number | null }
      // Rates need two scrapes by the control plane; keep calls flowing meanwhile.
      const workloads = await timed('tsmesh stat with rates', () =>
        waitFor(async () => {
          await split(50);
          const w = JSON.parse(await run(process.execPath, [CLI, 'stat', '-n', DEMO_NS, '-o', 'json', '--admin-address', `127.0.0.1:${port}`], { timeoutMs: 60_000 })) as Workload[];
          return w.find((x) => x.name === 'backend')?.rps ? w : undefined;
        }, 120_000, 'tsmesh stat to show the backend\'s requests'),
      );
      for (const w of workloads) {
        assert.equal(w.namespace, DEMO_NS);
        assert.equal(w.meshedPods, w.pods, `${w.name}: every pod's proxy scraped`);
      }
      // A workload is a ServiceAccount: backend-v1 and backend-v2 both run as backend.
      assert.deepEqual(workloads.map((w) => w.name).sort(), ['backend', 'frontend']);
      const backend = workloads.find((w) => w.name === 'backend')!;
      assert.equal(backend.pods, 3);
      assert.equal(backend.successRate, 1, 'backend answered every call');
      const table = await run(process.execPath, [CLI, 'stat', '-n', DEMO_NS, '--admin-address', `127.0.0.1:${port}`], { timeoutMs: 60_000 });
      assert.match(table, /^\S*frontend/m, table);
      assert.match(table, /backend/, table);
    } finally {
      pf.kill();
      await once(pf, 'exit').catch(() => {});
    }
  });

  it('meshed pods start without warning events: none from tsmesh-init or tsmesh-proxy (no Unhealthy from the startup probe), no FailedMount', async function () {
    const events = (await json<{ items: KEvent[] }>(['-n', DEMO_NS, 'get', 'events'])).items;
    const proxyStarts = events.filter((e) => e.reason === 'Started' && e.involvedObject.fieldPath === 'spec.initContainers{tsmesh-proxy}');
    assert.equal(proxyStarts.length, 4, 'the four pods\' proxies started, and their events are listed');
    const describe = (e: KEvent): string => `${e.involvedObject.name} ${e.involvedObject.fieldPath ?? ''} ${e.reason} x${e.count ?? 1}: ${e.message}`;
    const warnings = events.filter((e) => e.type === 'Warning');
    // The demo app's own readiness probe is tried the moment its container
    // starts, before node listens: it fails once the same way unmeshed, so it
    // is the app's, and only counted.
    const appsOwn = warnings.filter((e) => e.reason === 'Unhealthy' && e.involvedObject.fieldPath === 'spec.containers{app}' && e.message.startsWith('Readiness probe failed'));
    console.log(`      warning events: ${warnings.length - appsOwn.length} from the mesh; ${appsOwn.reduce((n, e) => n + (e.count ?? 1), 0)} from the demo app's own readiness probe at its start`);
    assert.deepEqual(warnings.filter((e) => !appsOwn.includes(e)).map(describe), []);
  });

  it('kind/e2e.sh passes, unmodified, against this cluster (--context)', async function () {
    const out = await timed('kind/e2e.sh', () => run('bash', [join(REPO, 'kind', 'e2e.sh'), '--context', CONTEXT], { env, timeoutMs: 300_000 }));
    assert.match(out, /^e2e: PASS$/m, out);
  });

  describe('lifecycle', function () {
    /**
     * Calls backend from the frontend's app container for `seconds`, a few
     * at a time, and returns the counts; run meanwhile `during`.
     */
    async function underLoad(seconds: number, during: () => Promise<void>): Promise<{ ok: number; failed: number; errors: string[] }> {
      const script = `
        const end = Date.now() + ${seconds * 1000}; let ok = 0, failed = 0; const errors = [];
        async function worker() {
          while (Date.now() < end) {
            try { const r = await fetch('http://backend:8080/', { signal: AbortSignal.timeout(5000) }); await r.text(); if (r.ok) ok++; else { failed++; errors.push(String(r.status)); } }
            catch (e) { failed++; errors.push(String(e.cause?.code ?? e.message)); }
          }
        }
        Promise.all([worker(), worker(), worker()]).then(() => process.stdout.write(JSON.stringify({ ok, failed, errors: errors.slice(0, 10) })));`;
      const load = inFrontend(script, (seconds + 60) * 1000);
      await during();
      return JSON.parse(await load) as { ok: number; failed: number; errors: string[] };
    }

    it('a rolling restart of a backend under continuous load: zero failed calls', async function () {
      const r = await timed('rolling restart under load', () =>
        underLoad(45, async () => {
          await sleep(3000);
          await kc(['-n', DEMO_NS, 'rollout', 'restart', 'deployment/backend-v1']);
          await kc(['-n', DEMO_NS, 'rollout', 'status', 'deployment/backend-v1', '--timeout=180s'], { timeoutMs: 200_000 });
        }),
      );
      console.log(`      ${r.ok} calls answered, ${r.failed} failed during the restart`);
      assert.ok(r.ok > 100, `only ${r.ok} calls answered`);
      assert.equal(r.failed, 0, r.errors.join(', '));
      // The new pods' proxies, too, were ready before their startup probe's first try.
      const events = (await json<{ items: KEvent[] }>(['-n', DEMO_NS, 'get', 'events'])).items;
      assert.deepEqual(events.filter((e) => e.message.startsWith('Startup probe failed')).map((e) => `${e.involvedObject.name}: ${e.message}`), []);
    });

    it('a Job whose pod is meshed completes', async function () {
      const job = {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: 'meshed-job', namespace: DEMO_NS },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: 'Never',
              serviceAccountName: 'frontend',
              containers: [
                {
                  name: 'call',
                  image: TSMESH_IMAGE,
                  imagePullPolicy: 'IfNotPresent',
                  command: ['node', '-e', "fetch('http://backend:8080/').then(r => r.json()).then(b => { console.log(JSON.stringify(b)); process.exit(b.service === 'backend' ? 0 : 1); })"],
                },
              ],
            },
          },
        },
      };
      await kc(['apply', '-f', '-'], { input: JSON.stringify(job) });
      await timed('meshed Job', () => kc(['-n', DEMO_NS, 'wait', 'job/meshed-job', '--for=condition=Complete', '--timeout=180s'], { timeoutMs: 200_000 }));
      const [pod] = await pods(DEMO_NS, 'job-name=meshed-job');
      assert.deepEqual(pod!.spec.initContainers?.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy']);
      assert.match(await kc(['-n', DEMO_NS, 'logs', pod!.metadata.name, '-c', 'call']), /"service":"backend"/);
    });

    it('a proxy SIGKILLed is restarted by the kubelet, and no call fails once it is Ready again', async function () {
      const [pod] = await pods(DEMO_NS, 'app=backend,version=v2');
      const name = pod!.metadata.name;
      const before = pod!.status.initContainerStatuses!.find((s) => s.name === 'tsmesh-proxy')!.restartCount;
      const pid = await containerPid(node!, pod!.metadata.uid, 'tsmesh-proxy');
      process.kill(pid, 'SIGKILL');
      await timed('proxy restarted and Ready', () =>
        waitFor(async () => {
          const p = await json<Pod>(['-n', DEMO_NS, 'get', 'pod', name]);
          const s = p.status.initContainerStatuses!.find((x) => x.name === 'tsmesh-proxy')!;
          return s.restartCount > before && s.ready && p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        }, 120_000, `${name}'s proxy to restart and be Ready`),
      );
      // The backend Service's endpoints follow the pod's readiness; once Ready, every call is answered.
      await sleep(2000);
      const c = await split(300);
      assert.equal(c.errors, 0, c.lastError);
      assert.ok((c.v2 ?? 0) > 0, 'v2 answers again');
    });

    it('the leading control-plane replica deleted while pods are created: every pod is injected, and another replica leads', async function () {
      const lease = async (): Promise<string> => kc(['-n', 'tsmesh-system', 'get', 'lease', 'tsmesh-control-plane', '-o', 'jsonpath={.spec.holderIdentity}']);
      const planes = (await pods('tsmesh-system', 'app.kubernetes.io/name=tsmesh-control-plane')).map((p) => p.metadata.name);
      const leader = await lease();
      assert.ok(planes.includes(leader), `the Lease names a replica (${leader}; replicas ${planes.join(' ')})`);
      const burst = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'burst', namespace: DEMO_NS },
        spec: {
          replicas: 3,
          selector: { matchLabels: { app: 'burst' } },
          template: {
            metadata: { labels: { app: 'burst' } },
            spec: {
              serviceAccountName: 'frontend',
              terminationGracePeriodSeconds: 1,
              containers: [{ name: 'app', image: TSMESH_IMAGE, imagePullPolicy: 'IfNotPresent', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'] }],
            },
          },
        },
      };
      await timed('leader deleted while pods are created', async () => {
        // Pods created just before, during and after the leader goes.
        await kc(['apply', '-f', '-'], { input: JSON.stringify(burst) });
        await kc(['-n', 'tsmesh-system', 'delete', 'pod', leader, '--wait=false']);
        for (const replicas of [4, 5, 6]) {
          await sleep(1000);
          await kc(['-n', DEMO_NS, 'scale', 'deployment/burst', `--replicas=${replicas}`]);
        }
        await kc(['-n', DEMO_NS, 'rollout', 'status', 'deployment/burst', '--timeout=180s'], { timeoutMs: 200_000 });
      });
      const list = await pods(DEMO_NS, 'app=burst');
      assert.equal(list.length, 6);
      for (const p of list) {
        assert.deepEqual(p.spec.initContainers?.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy'], `${p.metadata.name} injected`);
        assert.equal(p.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True', p.metadata.name);
      }
      const next = await timed('a new leader', () =>
        waitFor(async () => {
          const holder = await lease();
          const live = (await pods('tsmesh-system', 'app.kubernetes.io/name=tsmesh-control-plane')).map((p) => p.metadata.name);
          return holder !== '' && holder !== leader && live.includes(holder) ? holder : undefined;
        }, 60_000, 'another replica to hold the Lease'),
      );
      console.log(`      ${leader} deleted; ${next} leads`);
      // The webhook refuses rather than skips (failurePolicy Fail): a pod the
      // departing replica could not admit was created again by its ReplicaSet.
      const refused = (await json<{ items: KEvent[] }>(['-n', DEMO_NS, 'get', 'events', '--field-selector', 'reason=FailedCreate'])).items;
      if (refused.length > 0) console.log(`      ${refused.reduce((n, e) => n + (e.count ?? 1), 0)} pod creations refused meanwhile and retried: ${refused[0]!.message}`);
      const c = await split(100);
      assert.equal(c.errors, 0, c.lastError);
      await kc(['-n', DEMO_NS, 'delete', 'deployment', 'burst', '--wait=true', '--timeout=60s'], { timeoutMs: 90_000 });
    });

    it('--cert-ttl 1m: certificates rotate every half-life under continuous load with zero failed calls (long: TSMESH_LONG_TESTS=1 or CI)', async function () {
      if (process.env['TSMESH_LONG_TESTS'] !== '1' && process.env['CI'] !== 'true') {
        console.log('      skipped: the rotation run takes about 3 minutes; set TSMESH_LONG_TESTS=1 to run it (CI runs it)');
        this.skip();
      }
      await timed('tsmesh install --cert-ttl 1m', () => tsmesh(['install', '--image', TSMESH_IMAGE, '--cert-ttl', '1m', '--wait', '180s']));
      // Running proxies hold certificates of an hour; new pods get a minute's.
      await timed('demo restarted', async () => {
        await kc(['-n', DEMO_NS, 'rollout', 'restart', 'deployment/frontend', 'deployment/backend-v1', 'deployment/backend-v2']);
        for (const d of ['frontend', 'backend-v1', 'backend-v2']) await kc(['-n', DEMO_NS, 'rollout', 'status', `deployment/${d}`, '--timeout=180s'], { timeoutMs: 200_000 });
      });
      const seconds = 150;
      const r = await timed(`${seconds} s of calls with 1-minute certificates`, () => underLoad(seconds, () => Promise.resolve()));
      console.log(`      ${r.ok} calls answered, ${r.failed} failed`);
      assert.equal(r.failed, 0, r.errors.join(', '));
      assert.ok(r.ok > 1000, `only ${r.ok} calls answered`);
      for (const p of await pods(DEMO_NS, 'app in (frontend,backend)')) {
        const log = await kc(['-n', DEMO_NS, 'logs', p.metadata.name, '-c', 'tsmesh-proxy']);
        const certs = log.split('\n').filter((l) => /"msg":"(obtained|rotated) workload certificate"/.test(l)).map((l) => JSON.parse(l) as { time: string; notAfter: string });
        assert.ok(certs.length >= 4, `${p.metadata.name}: ${certs.length} certificates in ${seconds} s`);
        for (const c of certs) {
          const life = (Date.parse(c.notAfter) - Date.parse(c.time)) / 1000;
          assert.ok(life > 50 && life <= 61, `${p.metadata.name}: a certificate of ${life} s`);
        }
      }
    });

    it('tsmesh uninstall leaves the running pods serving', async function () {
      await timed('tsmesh uninstall', () => tsmesh(['uninstall']));
      await waitFor(async () => !(await kc(['get', 'ns', 'tsmesh-system', '--ignore-not-found', '-o', 'name'])).includes('tsmesh-system'), 120_000, 'tsmesh-system to be gone');
      const list = await pods(DEMO_NS, 'app in (frontend,backend)');
      assert.equal(list.length, 4);
      for (const p of list) assert.equal(p.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True', p.metadata.name);
      const c = await split(200);
      assert.equal(c.errors, 0, c.lastError);
    });
  });

  describe('teardown', function () {
    it('stopping the node leaves no process, mount, cgroup, namespace, link, sysctl or iptables change behind', async function () {
      timings.push(['teardown', await stopLeavingNothing(node!, host)]);
    });
  });
});

/** containerd's view: the PID of a pod's container (its sandbox when name is undefined), by the CRI labels. */
async function containerPid(node: TestNode, podUid: string, name?: string): Promise<number> {
  const ctr = ['ctr', '--address', join(node.dir, 'containerd.sock'), '-n', 'k8s.io'];
  const ids = (await run(ctr[0]!, [...ctr.slice(1), 'containers', 'ls', '-q'])).trim().split('\n');
  const tasks = new Map(
    (await run(ctr[0]!, [...ctr.slice(1), 'tasks', 'ls']))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[2] === 'RUNNING')
      .map((f) => [f[0]!, Number(f[1])] as const),
  );
  for (const id of ids) {
    if (!tasks.has(id)) continue;
    const info = JSON.parse(await run(ctr[0]!, [...ctr.slice(1), 'containers', 'info', id])) as { Labels?: Record<string, string> };
    const l = info.Labels ?? {};
    if (l['io.kubernetes.pod.uid'] !== podUid) continue;
    if (name === undefined ? l['io.cri-containerd.kind'] === 'sandbox' : l['io.kubernetes.container.name'] === name) return tasks.get(id)!;
  }
  throw new Error(`no running ${name ?? 'sandbox'} of pod ${podUid} in containerd`);
}
const sandboxPid = (node: TestNode, podUid: string): Promise<number> => containerPid(node, podUid);
