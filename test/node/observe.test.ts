// What an operator reaches for during an incident, on a real kubelet: the
// access log a namespace's annotation turns on (read with kubectl logs from
// the injected proxy container), and tsmesh proxy-status, proxy-config and
// tap as a user runs them: through `kubectl port-forward` to the control
// plane's admin port, tap with a ServiceAccount's token that Kubernetes RBAC
// allows (ClusterRole tsmesh-tap bound in the namespace) or refuses.
//
// One node (test/node/node.sh) for the file, the mesh installed by the CLI,
// the apps of the test apps' image (test/node/build.sh): in namespace obs, a
// client (web) calls an HTTP app (api). Skipped, saying why, when the machine
// cannot run the node (nodeTier()).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CONTROL_PLANE_NAME, INJECT_LABEL, MESH_NAMESPACE, TAP_CLUSTER_ROLE, TELEMETRY_ANNOTATIONS } from '../../contract/names.js';
import { kubectlPath, REPO, waitFor } from './node.js';
import { HTTP_PORT, IDLE, deployment, httpApp, meshOnNode, podTemplate, podTools, service, spiffe, type HttpAnswer } from './workloads.js';

const NS = 'obs';
const WEB = spiffe(NS, 'web');
const API = spiffe(NS, 'api');
const API_URL = `http://api.${NS}.svc.cluster.local`;

const WORKLOADS: object[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { [INJECT_LABEL]: 'enabled' }, annotations: { [TELEMETRY_ANNOTATIONS.accessLog]: 'all' } } },
  ...['web', 'api', 'tapper', 'nobody'].map((name) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: NS } })),
  deployment(NS, 'web', 1, podTemplate('web', 'web', { command: IDLE })),
  deployment(NS, 'api', 1, podTemplate('api', 'api', httpApp())),
  service(NS, 'api', 'api', [{ name: 'http', port: 80, targetPort: HTTP_PORT }]),
  // Who may tap in obs: tapper, as a user would be granted it.
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: 'tapper-taps', namespace: NS },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: TAP_CLUSTER_ROLE },
    subjects: [{ kind: 'ServiceAccount', name: 'tapper', namespace: NS }],
  },
];

/** A program that runs until stopped, its output gathered. */
interface Running {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  stop: () => void;
}

describe('real node: access logs, proxy-status, proxy-config and tap (test/node)', function () {
  this.timeout(240_000);
  const { kc, timed, node, teardownTest } = meshOnNode(WORKLOADS);
  const { onePod, calls, diagnoseOnFailure } = podTools(kc);
  const started: Running[] = [];
  let web = '';
  let api = '';
  /** Each control-plane replica's admin port on the host's loopback, through kubectl port-forward (each knows only its own proxies). */
  const admins: string[] = [];

  /** Starts a program with the node's environment; ended by its PID in after(). */
  function start(cmd: string, args: string[]): Running {
    const child = spawn(cmd, args, { env: node().env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const r: Running = {
      child,
      out: () => out,
      err: () => err,
      stop: () => {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      },
    };
    started.push(r);
    return r;
  }
  /** The repository's CLI against the node, run to its end. */
  const cli = (args: string[]): Promise<{ code: number | null; out: string; err: string }> =>
    new Promise((resolve) => {
      const r = start(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), ...args]);
      r.child.on('close', (code) => resolve({ code, out: r.out(), err: r.err() }));
    });
  /** web calls api `n` times. */
  const callApi = (n: number, path: string): Promise<HttpAnswer[]> =>
    calls<HttpAnswer[]>(NS, web, ['req', '10000', JSON.stringify(Array.from({ length: n }, (_, i) => ({ url: `${API_URL}${path}?n=${i}` })))]);

  before(async function () {
    await timed('obs pods Ready', async () => {
      for (const d of ['web', 'api']) await kc(['-n', NS, 'rollout', 'status', `deployment/${d}`, '--timeout=180s'], { timeoutMs: 200_000 });
    });
    web = await onePod(NS, 'web');
    api = await onePod(NS, 'api');
    const replicas = (await kc(['-n', MESH_NAMESPACE, 'get', 'pods', '-l', `app.kubernetes.io/name=${CONTROL_PLANE_NAME}`, '-o', 'jsonpath={.items[*].metadata.name}'])).split(' ').filter(Boolean);
    assert.ok(replicas.length >= 1, 'the control plane runs');
    for (const pod of replicas) {
      const forward = start(kubectlPath(), ['-n', MESH_NAMESPACE, 'port-forward', `pod/${pod}`, '0:15014']);
      const port = await waitFor(async () => /Forwarding from 127\.0\.0\.1:(\d+)/.exec(forward.out())?.[1], 30_000, `kubectl port-forward to ${pod}`);
      admins.push(`127.0.0.1:${port}`);
    }
    console.log(`      ${replicas.length} control-plane replicas, admin ports ${admins.join(', ')}`);
  });

  afterEach(diagnoseOnFailure(NS));

  after(function () {
    for (const r of started) r.stop();
  });

  it("the namespace's access-log annotation: each proxy writes one JSON line per request on its stdout, with both identities, the path, the status and the timing", async function () {
    const answers = await callApi(3, '/logged');
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200], JSON.stringify(answers));
    const lines = async (pod: string): Promise<Record<string, unknown>[]> =>
      (await kc(['-n', NS, 'logs', pod, '-c', 'tsmesh-proxy']))
        .split('\n')
        .filter((l) => l.startsWith('{') && l.includes('"/logged'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const served = await waitFor(async () => ((await lines(api)).length >= 3 ? lines(api) : undefined), 30_000, "api's proxy to log the three requests");
    const sent = await lines(web);
    console.log(`      api's proxy: ${JSON.stringify(served[0])}`);
    for (const l of served) {
      assert.deepEqual([l['direction'], l['source_identity'], l['destination_identity'], l['method'], l['status']], ['inbound', WEB, API, 'GET', 200], JSON.stringify(l));
      assert.equal(typeof l['duration_ms'], 'number');
      assert.match(String(l['path']), /^\/logged$/, 'the query is stripped by default');
      for (const field of ['time', 'authority', 'bytes_in', 'bytes_out', 'retries', 'upstream', 'trace_id', 'error']) assert.ok(field in l, `${field} in ${JSON.stringify(l)}`);
    }
    assert.ok(sent.length >= 3, `web's proxy logged ${sent.length} of the three requests`);
    for (const l of sent) assert.deepEqual([l['direction'], l['destination_service'], l['destination_identity'], l['status']], ['outbound', `api.${NS}`, API, 200], JSON.stringify(l));
  });

  it('tsmesh proxy-status through port-forward: both pods SYNCED on the version they acknowledged, their certificates valid; proxy-config shows what api runs', async function () {
    type Status = { pod: string | null; spiffeId: string; sync: string; ackedVersion: string | null; certExpiresAt: string | null };
    let last = '';
    // As the usage says: each replica knows the proxies on its own streams; asked in turn.
    const read = async (): Promise<Status[]> => {
      const all: Status[] = [];
      last = '';
      for (const admin of admins) {
        const status = await cli(['proxy-status', '-o', 'json', '--admin-address', admin]);
        assert.equal(status.code, 0, status.err);
        last += status.out;
        all.push(...(JSON.parse(status.out) as { proxies: Status[] }).proxies);
      }
      return all;
    };
    // A push (an endpoint that became ready) may be on its way to a proxy: SYNCED once it acknowledged it.
    const proxies = await waitFor(
      async () => {
        const all = await read();
        return [web, api].every((pod) => all.some((p) => p.pod === pod && p.sync === 'SYNCED')) ? all : undefined;
      },
      30_000,
      'web and api SYNCED',
    ).catch((e: Error) => assert.fail(`${e.message}; the last answers: ${last}`));
    const status = { out: last };
    console.log(`      ${proxies.map((p) => `${p.pod} ${p.sync} ${p.ackedVersion} cert until ${p.certExpiresAt}`).join('; ')}`);
    for (const [pod, id] of [
      [web, WEB],
      [api, API],
    ] as const) {
      const p = proxies.find((x) => x.pod === pod);
      assert.ok(p, `${pod} in ${status.out}`);
      assert.deepEqual([p.spiffeId, p.sync], [id, 'SYNCED']);
      assert.equal(proxies.filter((x) => x.pod === pod).length, 1, `${pod} on one replica's stream`);
      assert.ok(p.certExpiresAt !== null && Date.parse(p.certExpiresAt) > Date.now(), `its certificate expires ${p.certExpiresAt}`);
    }
    // The replica that serves api's stream answers proxy-config for it; another says it has no such proxy.
    let config = { code: null as number | null, out: '', err: '' };
    let apiAdmin = '';
    for (const admin of admins) {
      config = await cli(['proxy-config', api, '-o', 'json', '--admin-address', admin]);
      if (config.code === 0) {
        apiAdmin = admin;
        break;
      }
    }
    assert.equal(config.code, 0, config.err);
    const table = await cli(['proxy-status', '--admin-address', apiAdmin]);
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, new RegExp(`${api}.*SYNCED`));
    const answer = JSON.parse(config.out) as { proxy: { pod: string; ackedVersion: string }; config: { version: string; services: { name: string; namespace: string }[]; mesh: { trustDomain: string } } | null };
    const apiStatus = proxies.find((x) => x.pod === api)!;
    assert.equal(answer.proxy.pod, api);
    assert.equal(answer.config?.version, apiStatus.ackedVersion, 'the config shown is the version api acknowledged');
    assert.ok(answer.config?.services.some((s) => s.name === 'api' && s.namespace === NS), 'api\'s config names the Service api');
    const summary = await cli(['proxy-config', api, '--admin-address', apiAdmin]);
    assert.equal(summary.code, 0, summary.err);
    assert.match(summary.out, /api\.obs/);
  });

  it('tsmesh tap with a token RBAC allows streams the requests api serves, header values redacted; a token without the grant is refused naming the permission', async function () {
    const token = async (sa: string): Promise<string> => (await kc(['-n', NS, 'create', 'token', sa])).trim();
    const refused = await cli(['tap', 'deploy/api', '-n', NS, '--token', await token('nobody'), '--admin-address', admins[0]!]);
    console.log(`      without the grant: exit ${refused.code}: ${refused.err.trim().split('\n')[0]}`);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err + refused.out, /403|forbidden|not allowed/i);
    assert.match(refused.err + refused.out, new RegExp(TAP_CLUSTER_ROLE));

    const tap = start(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), 'tap', 'deploy/api', '-n', NS, '--path', '/tapped', '-o', 'json', '--token', await token('tapper'), '--admin-address', admins[0]!]);
    type Event = { type: string; direction?: string; source?: string; path?: string; status?: number; headers?: Record<string, string> };
    const events = (): Event[] =>
      tap
        .out()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Event);
    // The tap reaches the proxies a moment after it starts: calls go on until their events come.
    const seen = await waitFor(
      async () => {
        if (tap.child.exitCode !== null) throw new Error(`tsmesh tap exited ${tap.child.exitCode}: ${tap.err()}`);
        await callApi(2, '/tapped');
        const e = events();
        return e.some((x) => x.type === 'rsp') && e.some((x) => x.type === 'end') ? e : undefined;
      },
      60_000,
      'tap events of api',
    );
    tap.stop();
    const req = seen.find((e) => e.type === 'req')!;
    console.log(`      ${seen.length} events; first request: ${JSON.stringify(req)}`);
    assert.deepEqual([req.direction, req.source, req.path?.startsWith('/tapped')], ['inbound', WEB, true]);
    assert.ok(Object.values(req.headers ?? {}).length > 0 && Object.values(req.headers ?? {}).every((v) => v === '<redacted>'), `header values redacted: ${JSON.stringify(req.headers)}`);
    assert.ok(seen.some((e) => e.type === 'rsp' && e.status === 200));
    assert.ok(seen.every((e) => e.type === 'status' || e.path === undefined || e.path.startsWith('/tapped')), 'only what the path filter lets through');
  });

  teardownTest([NS]);
});
