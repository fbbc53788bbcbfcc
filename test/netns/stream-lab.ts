// A mesh in network namespaces whose proxies run on the control plane's
// discovery stream, as they do in a cluster: `tsmesh control-plane
// --mesh-file` reads a `kind: Mesh` file the test writes (and rewrites), and
// every `tsmesh proxy` runs without --config-file, so its services, policies
// and authorization come over GET /v1/config (mTLS) from the control plane.
// The same parts as test/netns/mesh-lab.ts, for any number of pods:
//
//   br     a namespace holding only the bridge "br0"; every other namespace
//          has one veth ("eth0") on it, and nothing links it to the machine's
//          own network.
//   cp     `tsmesh control-plane` (CA with a token file, discovery from the
//          mesh file), <subnet>.10; stopped and restarted by PID.
//   pods   each: `tsmesh init` redirects, `tsmesh proxy` as uid 1337 with its
//          own token and ServiceAccount, optionally test/netns/mesh-app.ts
//          (named after the pod) as uid 1000 on 8080; <subnet>.<host>. A pod
//          with `meshed: false` has neither redirects nor proxy (a pod
//          without a sidecar).
//
// ClusterIPs (in `serviceCidr`) belong to no namespace: in each pod the range
// is routed onto the bridge only so that connect() finds a route; the
// redirect takes every connection to it to the pod's proxy, and a filter rule
// drops (and counts) any packet still addressed to the range after nat.
//
// Every process is started through spawnIn (lab.ts) and killed by its PID in
// destroy(); then the namespaces and the temporary directory are removed.
import { randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import type { LoadOptions, LoadSummary } from './mesh-client.js';
import {
  ADMIN_PORT,
  APP_ECHO_PORT,
  APP_HTTP_PORT,
  APP_USER,
  CA_PORT,
  CP_ADMIN_PORT,
  GiveUp,
  K8S_NAMESPACE,
  type Managed,
  PROXY_USER,
  sleep,
  TRUST_DOMAIN,
  waitFor,
} from './mesh-lab.js';
import { NamespaceLab } from './lab.js';
import { run } from './netns.js';
import { parseMetrics, type Sample } from '../../lib/prom-text.js';

export interface PodSpec {
  /** The pod's name, and its namespace's (keep it short: the bridge port is "v-<name>"). */
  name: string;
  /** The last byte of its address in the lab's /24. */
  host: number;
  serviceAccount: string;
  /** Runs test/netns/mesh-app.ts, named after the pod, as uid 1000 on APP_HTTP_PORT. */
  app?: boolean;
  /** false: no `tsmesh init`, no proxy (default true). */
  meshed?: boolean;
  /** More variables for its proxy, as the injector would set them (TSMESH_APP_PROBES). */
  proxyEnv?: Readonly<Record<string, string>>;
}

/** A `kind: Mesh` document (control/sources/file.ts) without apiVersion and kind. */
export interface MeshDocument {
  mesh?: Record<string, unknown>;
  services: Record<string, unknown>[];
  trafficPolicies?: Record<string, unknown>[];
  authorizationPolicies?: Record<string, unknown>[];
  namespaces?: Record<string, unknown>[];
  workloads?: Record<string, unknown>[];
}

export interface StreamLabOptions {
  /** Namespaces are named tsmesh-<tag>-<random>-<node>. */
  tag: string;
  /** The first three bytes of the lab's /24, e.g. "10.244.20". */
  subnet: string;
  /** The ClusterIP range, e.g. "10.96.20.0/24". */
  serviceCidr: string;
  pods: readonly PodSpec[];
  /** The mesh file the control plane starts with. */
  mesh: MeshDocument;
  /** The proxies' TSMESH_DRAIN_DURATION (default 5s). */
  drainDuration?: string;
}

/** A request mesh-app.ts logged. */
export interface AppRequest {
  at: number;
  path: string;
  peer: string;
  /** Absent when the app answered 200. */
  status?: number;
  traceparent?: string;
  /** x-tsmesh-client-id and x-forwarded-client-cert as the app got them. */
  clientId?: string;
  clientCert?: string;
}

/** What mesh-app.ts answers a control line with. */
export interface AppControlAck {
  event: 'control';
  /** Connections open to the app's HTTP port. */
  connections: number;
  /** Requests the app holds unanswered (hang mode). */
  held: number;
}

const CP = 'cp';
const CP_HOST = 10;
const CLUSTER_IP_GUARD = 'tsmesh-test/cluster-ip-never-leaves';

async function must(command: string, args: readonly string[]): Promise<string> {
  const r = await run(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export class StreamLab extends NamespaceLab<string> {
  /** Address of each node: "cp" and every pod. */
  readonly addr: Record<string, string> = {};
  readonly pods: ReadonlyMap<string, PodSpec>;
  readonly proxies: Record<string, Managed> = {};
  readonly apps: Record<string, Managed> = {};
  controlPlane: Managed | undefined;
  /** How long create() took. */
  setupMs = 0;
  private controlPlaneStarts = 0;

  private constructor(
    id: string,
    dir: string,
    readonly options: StreamLabOptions,
  ) {
    // Namespace of each node: "br", "cp" and every pod.
    super(id, dir, Object.fromEntries(['br', CP, ...options.pods.map((p) => p.name)].map((node) => [node, `tsmesh-${options.tag}-${id}-${node}`])));
    this.pods = new Map(options.pods.map((p) => [p.name, p]));
    this.addr[CP] = `${options.subnet}.${CP_HOST}`;
    for (const p of options.pods) this.addr[p.name] = `${options.subnet}.${p.host}`;
  }

  /** Builds everything and waits until every proxy is ready; removes what it made if a step fails. */
  static async create(options: StreamLabOptions): Promise<StreamLab> {
    const dir = await mkdtemp(join(tmpdir(), `tsmesh-${options.tag}-`));
    const lab = new StreamLab(randomBytes(3).toString('hex'), dir, options);
    try {
      const t0 = Date.now();
      await lab.network();
      await Promise.all([
        lab.identities().then(() => lab.startControlPlane()),
        ...options.pods.filter((p) => p.meshed !== false).map((p) => lab.init(p.name)),
        ...options.pods.filter((p) => p.app).map((p) => lab.startApp(p.name)),
      ]);
      await Promise.all(options.pods.filter((p) => p.meshed !== false).map((p) => lab.startProxy(p.name)));
      lab.setupMs = Date.now() - t0;
      return lab;
    } catch (e) {
      const logs = lab.logs();
      await lab.destroy();
      throw new Error(`${(e as Error).message}\n${logs}`, { cause: e });
    }
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** The mesh file's endpoint entry for a pod: its address and ServiceAccount. */
  endpoint(pod: string): { address: string; serviceAccount: string } {
    const p = this.pods.get(pod);
    if (!p) throw new Error(`no pod ${pod} in this lab`);
    return { address: this.addr[pod]!, serviceAccount: p.serviceAccount };
  }

  /** The SPIFFE ID of a pod's proxy. */
  identity(pod: string): string {
    return `spiffe://${TRUST_DOMAIN}/ns/${K8S_NAMESPACE}/sa/${this.pods.get(pod)!.serviceAccount}`;
  }

  private async network(): Promise<void> {
    for (const n of Object.values(this.ns)) await must('ip', ['netns', 'add', n]);
    const br = this.ns.br!;
    await must('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
    await must('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
    await must('ip', ['-n', br, 'link', 'set', 'lo', 'up']);
    for (const node of [CP, ...this.pods.keys()]) {
      const ns = this.ns[node]!;
      const port = `v-${node}`;
      await must('ip', ['-n', br, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await must('ip', ['-n', br, 'link', 'set', port, 'master', 'br0', 'up']);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await must('ip', ['-n', ns, 'addr', 'add', `${this.addr[node]}/24`, 'dev', 'eth0']);
      await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      if (node === CP) continue;
      await must('ip', ['-n', ns, 'route', 'add', this.options.serviceCidr, 'dev', 'eth0']);
      await this.mustIn(node, ['iptables-nft', '-w', '-A', 'OUTPUT', '-d', this.options.serviceCidr, '-m', 'comment', '--comment', CLUSTER_IP_GUARD, '-j', 'DROP']);
    }
  }

  /** The CA, every pod's token, the trust bundle, the token file and the first mesh file. */
  private async identities(): Promise<void> {
    await chmod(this.dir, 0o755);
    const r = await run(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'ca', 'init', '--out', join(this.dir, 'ca'), '--trust-domain', TRUST_DOMAIN], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`tsmesh ca init failed: ${r.stderr}`);
    await copyFile(join(this.dir, 'ca', 'root-cert.pem'), this.path('root-cert.pem'));
    await chmod(this.path('root-cert.pem'), 0o644);
    const tokens: { token: string; spiffeId: string }[] = [];
    for (const pod of this.pods.keys()) {
      const token = randomBytes(24).toString('hex');
      tokens.push({ token, spiffeId: this.identity(pod) });
      await writeFile(this.path(`${pod}.token`), token + '\n', { mode: 0o400 });
      await chown(this.path(`${pod}.token`), PROXY_USER.uid!, PROXY_USER.gid!);
    }
    await writeFile(this.path('tokens.json'), JSON.stringify({ tokens }), { mode: 0o600 });
    await this.writeMesh(this.options.mesh);
  }

  /** Writes the mesh file whole (by rename); the control plane notices within its 250 ms poll. */
  async writeMesh(doc: MeshDocument): Promise<void> {
    const file = this.path('mesh.json');
    const body = { apiVersion: 'tsmesh.io/v1alpha1', kind: 'Mesh', mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT' }, ...doc };
    await writeFile(`${file}.tmp`, JSON.stringify(body, null, 2), { mode: 0o644 });
    await rename(`${file}.tmp`, file);
  }

  /** Starts `tsmesh control-plane --mesh-file` in cp and waits for /readyz. */
  async startControlPlane(): Promise<Managed> {
    if (this.controlPlane?.running) throw new Error('the control plane is already running');
    const cp = this.spawnIn(`control-plane#${++this.controlPlaneStarts}`, CP, [
      process.execPath,
      '--import',
      'tsx',
      'cli/main.ts',
      'control-plane',
      '--ca-dir',
      join(this.dir, 'ca'),
      '--token-file',
      this.path('tokens.json'),
      '--mesh-file',
      this.path('mesh.json'),
      '--host',
      this.addr[CP]!,
      '--serving-ip',
      this.addr[CP]!,
      '--port',
      String(CA_PORT),
      '--admin-port',
      String(CP_ADMIN_PORT),
    ]);
    this.controlPlane = cp;
    await waitFor(
      'the control plane to be ready',
      async () => {
        if (!cp.running) throw new GiveUp('the control plane exited');
        const r = await this.curl(CP, [`http://${this.addr[CP]}:${CP_ADMIN_PORT}/readyz`]);
        return r.status === 200 ? true : undefined;
      },
      60_000,
      100,
    );
    return cp;
  }

  /** Kills the control plane (SIGKILL, by PID): no goodbye to the proxies, as when its node dies. */
  async killControlPlane(): Promise<void> {
    const cp = this.controlPlane;
    if (!cp?.running) throw new Error('the control plane is not running');
    cp.signal('SIGKILL');
    await cp.exited;
  }

  /** `tsmesh init` with its defaults, as the init container runs it. */
  private async init(pod: string): Promise<void> {
    const r = await this.exec(pod, [process.execPath, '--import', 'tsx', 'cli/main.ts', 'init'], {}, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`tsmesh init in ${pod} failed:\n${r.stdout}\n${r.stderr}`);
  }

  private async startApp(pod: string): Promise<void> {
    const app = this.spawnIn(
      `app-${pod}`,
      pod,
      [process.execPath, '--import', 'tsx', 'test/netns/mesh-app.ts', String(APP_HTTP_PORT), String(APP_ECHO_PORT), pod],
      APP_USER,
    );
    this.apps[pod] = app;
    await app.line((l) => l.includes('"ready":true'), 30_000);
  }

  /** Kills a pod's app (SIGKILL, by PID), as when its container crashes, and starts it again `downMs` later. */
  async restartApp(pod: string, downMs: number): Promise<void> {
    const app = this.apps[pod];
    if (!app?.running) throw new Error(`the app of ${pod} is not running`);
    app.signal('SIGKILL');
    await app.exited;
    await sleep(downMs);
    await this.startApp(pod);
  }

  /** Starts `tsmesh proxy` (no --config-file: on the discovery stream) as uid 1337 and waits for /ready. */
  async startProxy(pod: string): Promise<Managed> {
    const proxy = this.spawnProxy(pod, {
      controlPlaneAddress: `${this.addr[CP]}:${CA_PORT}`,
      podIp: this.addr[pod]!,
      podNamespace: K8S_NAMESPACE,
      serviceAccount: this.pods.get(pod)!.serviceAccount,
      trustDomain: TRUST_DOMAIN,
      tokenPath: this.path(`${pod}.token`),
      trustBundlePath: this.path('root-cert.pem'),
      drainDuration: this.options.drainDuration ?? '5s',
      args: [],
      user: PROXY_USER,
      ...(this.pods.get(pod)!.proxyEnv ? { env: this.pods.get(pod)!.proxyEnv } : {}),
    });
    this.proxies[pod] = proxy;
    await this.waitProxyReady(pod, proxy);
    return proxy;
  }

  /** The config a pod's proxy runs (its admin /config), or undefined when it has none or does not answer. */
  async config(pod: string): Promise<ProxyConfig | undefined> {
    const r = await this.curl(pod, [`http://127.0.0.1:${ADMIN_PORT}/config`]);
    return r.status === 200 ? (JSON.parse(r.body) as ProxyConfig) : undefined;
  }

  /** Polls a pod's /config until `test` holds; returns that config and how long it took. */
  async waitConfig(pod: string, what: string, test: (c: ProxyConfig) => boolean, timeoutMs = 15_000, everyMs = 50): Promise<{ config: ProxyConfig; ms: number }> {
    const t0 = Date.now();
    const config = await waitFor(
      `proxy ${pod}'s /config to show ${what}`,
      async () => {
        const c = await this.config(pod);
        return c && test(c) ? c : undefined;
      },
      timeoutMs,
      everyMs,
    );
    return { config, ms: Date.now() - t0 };
  }

  /** A pod's proxy's /metrics. */
  async metrics(pod: string): Promise<Sample[]> {
    const r = await this.curl(pod, [`http://127.0.0.1:${ADMIN_PORT}/metrics`]);
    if (r.status !== 200) throw new Error(`GET /metrics on ${pod}'s proxy: ${r.status} ${r.error}`);
    return parseMetrics(r.body);
  }

  /** Starts mesh-client.ts `load` in a pod as uid 1000 (its connections take the redirect). */
  startLoad(pod: string, opts: LoadOptions): Managed {
    return this.spawnIn(`load-${pod}`, pod, [process.execPath, '--import', 'tsx', 'test/netns/mesh-client.ts', 'load', JSON.stringify(opts)], APP_USER);
  }

  /** The summary line of a load started with startLoad. */
  async loadSummary(load: Managed, timeoutMs: number): Promise<LoadSummary> {
    const line = await load.line((l) => l.startsWith('{"sent":'), timeoutMs);
    await load.exited;
    return JSON.parse(line) as LoadSummary;
  }

  /** Runs a bounded load from a pod to completion. */
  async load(pod: string, opts: LoadOptions): Promise<LoadSummary> {
    return this.loadSummary(this.startLoad(pod, opts), opts.durationMs + 60_000);
  }

  /** Requests a pod's app logged whose path starts with `prefix`. */
  appRequests(pod: string, prefix: string): AppRequest[] {
    const out: AppRequest[] = [];
    for (const l of (this.apps[pod]?.stdout ?? '').split('\n')) {
      if (!l.includes('"event":"request"')) continue;
      const r = JSON.parse(l) as AppRequest;
      if (r.path.startsWith(prefix)) out.push(r);
    }
    return out;
  }

  /**
   * Sends a control line to a pod's app (see mesh-app.ts) and waits until it
   * is acknowledged; returns the acknowledgement, which gives the app's open
   * connections and held requests at that moment.
   */
  async controlApp(pod: string, command: object): Promise<AppControlAck> {
    const app = this.apps[pod]!;
    const acks = (): string[] => app.stdout.split('\n').filter((l) => l.includes('"event":"control"'));
    const before = acks().length;
    app.child.stdin!.write(JSON.stringify(command) + '\n');
    const line = await waitFor(`app ${pod} to take ${JSON.stringify(command)}`, async () => acks()[before], 5000, 10);
    return JSON.parse(line) as AppControlAck;
  }

  /** Packets dropped in a pod because they still carried a ClusterIP after nat (must stay 0). */
  async clusterIpLeaks(pod: string): Promise<number> {
    const out = await this.mustIn(pod, ['iptables-nft', '-w', '-L', 'OUTPUT', '-v', '-n', '-x']);
    const line = out.split('\n').find((l) => l.includes(CLUSTER_IP_GUARD));
    if (!line) throw new Error(`the ClusterIP guard rule is gone from ${pod}'s OUTPUT chain:\n${out}`);
    return Number(line.trim().split(/\s+/)[0]);
  }
}
