// What the checks on a real node (protocols.test.ts, policy.test.ts) share:
// the hooks that bring a node up with the mesh installed and their workloads
// applied, and stop it leaving nothing (meshOnNode); the manifests of their
// workloads (pods of the test apps' image, Deployments, Services); and the
// helpers that read a namespace's pods, run the test apps' calls in a pod by
// kubectl exec, read a proxy's /metrics through the API server, and print
// what a namespace was doing when a test failed (podTools).
import assert from 'node:assert/strict';
import { parseMetrics, type Sample } from '../../lib/prom-text.js';
import { TESTAPPS_IMAGE, TSMESH_IMAGE, hostState, injectorReady, kubectl, skipWithoutNode, startNode, stopLeavingNothing, tsmeshCli, waitFor, type HostState, type TestNode } from './node.js';

export const TD = 'cluster.local';
/** Where the test apps' image keeps the bundled apps (test/node/build.sh). */
export const APPS = '/opt/tsmesh-test';
export const spiffe = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
/** An app container that idles, for kubectl exec. */
export const IDLE = ['node', '-e', "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30)"];
export const HTTP_PORT = 8080;

export interface Container {
  command: string[];
  ports?: number[];
  /** The kubelet's readiness probe, which the injector points at the proxy's admin port. */
  readinessProbe?: object;
  env?: Record<string, string>;
}

export function podTemplate(app: string, serviceAccount: string, c: Container, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): object {
  return {
    metadata: { labels: { app, ...labels }, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) },
    spec: {
      serviceAccountName: serviceAccount,
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'app',
          image: TESTAPPS_IMAGE,
          imagePullPolicy: 'Never',
          command: c.command,
          ...(c.ports ? { ports: c.ports.map((containerPort) => ({ containerPort })) } : {}),
          ...(c.readinessProbe ? { readinessProbe: { periodSeconds: 1, ...c.readinessProbe } } : {}),
          ...(c.env ? { env: Object.entries(c.env).map(([name, value]) => ({ name, value })) } : {}),
        },
      ],
    },
  };
}
export const deployment = (ns: string, name: string, replicas: number, template: object): object => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: ns },
  spec: { replicas, selector: { matchLabels: { app: name } }, template },
});
export const service = (ns: string, name: string, app: string, ports: object[], spec: object = {}): object => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { selector: { app }, ports, ...spec },
});
export const tcpProbe = (port: number): object => ({ tcpSocket: { port } });
/** test/node/apps/http-app.ts on HTTP_PORT, Ready when it listens. */
export const httpApp = (env: Record<string, string> = {}): Container => ({ command: ['node', `${APPS}/http-app.mjs`, String(HTTP_PORT)], ports: [HTTP_PORT], readinessProbe: tcpProbe(HTTP_PORT), env });

export interface Pod {
  metadata: { name: string; deletionTimestamp?: string; labels?: Record<string, string> };
  spec: { initContainers?: { name: string }[]; containers?: { name: string }[] };
  status: { podIP?: string; conditions?: { type: string; status: string; lastTransitionTime?: string }[]; containerStatuses?: { name: string; restartCount: number }[] };
}
/** One answer of calls.ts http or req. */
export interface HttpAnswer {
  url: string;
  status?: number;
  meshError?: string;
  policy?: string;
  body?: { pod?: string; method?: string; path?: string; clientId?: string | null; clientCert?: string | null } | string;
  error?: string;
  ms: number;
}

export type Kubectl = (args: string[], opts?: { input?: string; timeoutMs?: number }) => Promise<string>;

/** Reading and driving the pods of a node through its kubectl. */
export function podTools(kc: Kubectl) {
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kc([...args, '-o', 'json'])) as T;
  /** The Ready pods of a workload, by name (none terminating). */
  const readyPods = async (ns: string, app: string): Promise<Pod[]> =>
    (await json<{ items: Pod[] }>(['-n', ns, 'get', 'pods', '-l', `app=${app}`])).items
      .filter((p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const onePod = async (ns: string, app: string): Promise<string> => {
    const [p] = await readyPods(ns, app);
    assert.ok(p, `a Ready ${app} pod in ${ns}`);
    return p.metadata.name;
  };
  /** Runs a command in a pod's app container (bounded: kubectl is killed after timeoutMs). */
  const inPod = (ns: string, pod: string, command: string[], timeoutMs = 60_000): Promise<string> => kc(['-n', ns, 'exec', pod, '-c', 'app', '--', ...command], { timeoutMs });
  /** test/node/apps/calls.ts in a pod: one JSON answer. */
  const calls = async <T>(ns: string, pod: string, args: string[], timeoutMs = 60_000): Promise<T> => JSON.parse(await inPod(ns, pod, ['node', `${APPS}/calls.mjs`, ...args], timeoutMs)) as T;
  /** A pod's proxy's /metrics, through the API server's proxy to its admin port (never captured). */
  const metrics = async (ns: string, pod: string): Promise<Sample[]> => parseMetrics(await kc(['get', '--raw', `/api/v1/namespaces/${ns}/pods/${pod}:15020/proxy/metrics`]));
  /** Asserts every pod of the namespace was injected, but those labelled tsmesh.io/inject=disabled. */
  const assertInjected = async (ns: string): Promise<void> => {
    for (const p of (await json<{ items: Pod[] }>(['-n', ns, 'get', 'pods'])).items) {
      const want = p.metadata.labels?.['tsmesh.io/inject'] === 'disabled' ? [] : ['tsmesh-init', 'tsmesh-proxy'];
      assert.deepEqual(p.spec.initContainers?.map((c) => c.name) ?? [], want, `${p.metadata.name}'s init containers`);
    }
  };
  /** For afterEach: when a test failed, what the pods of its namespaces were doing (their state, events, each container's last log lines). */
  const diagnoseOnFailure = (...namespaces: string[]) =>
    async function (this: Mocha.Context): Promise<void> {
      if (this.currentTest?.state !== 'failed') return;
      const out: string[] = [];
      for (const ns of namespaces) {
        out.push(await kc(['-n', ns, 'get', 'pods', '-o', 'wide']).catch((e: Error) => e.message));
        out.push(await kc(['-n', ns, 'get', 'events', '--sort-by=.lastTimestamp']).catch((e: Error) => e.message));
        for (const p of (await json<{ items: Pod[] }>(['-n', ns, 'get', 'pods']).catch(() => ({ items: [] as Pod[] }))).items) {
          for (const c of ['tsmesh-proxy', ...(p.spec.containers?.map((x) => x.name) ?? ['app'])]) out.push(`--- ${p.metadata.name} ${c}\n${await kc(['-n', ns, 'logs', p.metadata.name, '-c', c, '--tail=30']).catch((e: Error) => e.message)}`);
        }
      }
      console.log(out.join('\n'));
    };
  return { json, readyPods, onePod, inPod, calls, metrics, assertInjected, diagnoseOnFailure };
}

/** A node with the mesh installed, for the checks of one test file. */
export interface MeshOnNode {
  /** kubectl on the node (bounded: killed after timeoutMs). */
  kc: Kubectl;
  /** Runs fn and keeps how long it took, printed when the file ends. */
  timed: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** Whether the node runs (before() did not skip or fail before starting it). */
  running: () => boolean;
  /** The node itself (its kubeconfig and environment), once before() started it. */
  node: () => TestNode;
}

/**
 * Registers, in the calling describe(), the hooks of a test file's node:
 * before() skips plainly when the machine cannot run it (nodeTier()), else
 * starts it, installs the mesh by the CLI, waits for the injector and applies
 * every workload at once (their pods start side by side while the checks run
 * in turn); after() stops it (safe when the teardown test already did) and
 * prints the timings. Call teardownTest() last, in the same describe().
 */
export function meshOnNode(workloads: object[]): MeshOnNode & { teardownTest: (namespaces: string[]) => void } {
  let node: TestNode | undefined;
  let host: HostState;
  const timings: [string, number][] = [];
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      timings.push([what, Date.now() - t0]);
    }
  };
  const kc: Kubectl = (args, opts = {}) => kubectl(node!, args, opts);

  before(async function () {
    skipWithoutNode(this);
    host = await hostState();
    const t0 = Date.now();
    node = await startNode();
    console.log(`      node Ready with DNS in ${Date.now() - t0} ms (${Object.entries(node.timings).map(([k, v]) => `${k} ${v} ms`).join(', ')}); state in ${node.dir}`);
    const install = await timed('tsmesh install', () => tsmeshCli(node!, ['install', '--image', TSMESH_IMAGE, '--wait', '180s']));
    assert.match(install, /tsmesh-control-plane/);
    await timed('injector caBundle', () => injectorReady(node!));
    if (workloads.length > 0) await kc(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: workloads }) });
  });

  after(async function () {
    // Stops the node when a test failed before the teardown test (stop is safe to call twice).
    await node?.stop();
    if (timings.length > 0) console.log(`      timings: ${timings.map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}`);
  });

  /** The last test: every namespace of the file deleted (those of checks --grep left out too), the node stopped, nothing of it left. */
  const teardownTest = (namespaces: string[]): void => {
    describe('teardown', function () {
      it('every check\'s namespace is deleted, and stopping the node leaves nothing behind', async function () {
        if (!node) this.skip();
        await kc(['delete', 'namespace', ...namespaces, '--wait=false', '--ignore-not-found']);
        await timed('namespaces deleted', () =>
          waitFor(async () => {
            const left = (await kc(['get', 'namespaces', '-o', 'name'])).split('\n').filter((n) => namespaces.some((ns) => n === `namespace/${ns}`));
            return left.length === 0;
          }, 120_000, `the namespaces ${namespaces.join(', ')} to be gone`),
        );
        timings.push(['teardown', await stopLeavingNothing(node!, host)]);
      });
    });
  };
  return { kc, timed, running: () => node !== undefined, node: () => node!, teardownTest };
}
