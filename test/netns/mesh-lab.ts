// A small mesh on this machine, in network namespaces the test creates: the
// shape of two meshed pods in a cluster, with every part the real program.
//
//   br     a namespace holding only the bridge "br0"; every other namespace
//          has one veth ("eth0") on it. Nothing links it to the machine's
//          own network, so no packet can leave the test's namespaces.
//   cp     `tsmesh control-plane` (CA with a token file), 10.244.10.10
//   a      pod a: `tsmesh init` redirects, `tsmesh proxy` as uid 1337, the
//          app is test/netns/mesh-client.ts or curl as uid 1000, 10.244.10.11
//   b      pod b: the same, the app is test/netns/mesh-app.ts (HTTP/1.1 and
//          h2c on 8080, TCP echo on 9000) as uid 1000, 10.244.10.12
//   plain  a namespace without a sidecar, 10.244.10.13
//
// Service "b" has the ClusterIP 10.96.0.10, which no namespace holds: in a,
// 10.96.0.0/16 is routed onto the bridge only so that connect() finds a route;
// iptables' nat OUTPUT redirects every connection to it to a's proxy first,
// and a filter rule in a drops (and counts) any packet still addressed to
// 10.96.0.0/16 after nat, so the test can show none ever left.
//
// Every process is started through spawnIn (lab.ts) and killed by its PID in
// destroy(); then the namespaces and the temporary directory are removed.
import { randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GiveUp, Managed, must as mustIn, sleep, waitFor } from '../../lib/netns.js';
import { NamespaceLab } from './lab.js';
import { REPO, run, type RunAs } from './netns.js';

export { GiveUp, Managed, sleep, waitFor };

export const PROXY_USER: RunAs = { uid: 1337, gid: 1337 };
export const APP_USER: RunAs = { uid: 1000, gid: 1000 };

export const ADDR = {
  cp: '10.244.10.10',
  a: '10.244.10.11',
  b: '10.244.10.12',
  plain: '10.244.10.13',
} as const;
export const PREFIX = 24;
export const SERVICE_CIDR = '10.96.0.0/16';
export const SERVICE_IP = '10.96.0.10';
export const CA_PORT = 15012;
export const CP_ADMIN_PORT = 15014;
export const ADMIN_PORT = 15020;
export const APP_HTTP_PORT = 8080;
export const APP_ECHO_PORT = 9000;

export const TRUST_DOMAIN = 'cluster.local';
export const K8S_NAMESPACE = 'demo';
export const IDENTITY = {
  a: `spiffe://${TRUST_DOMAIN}/ns/${K8S_NAMESPACE}/sa/a`,
  b: `spiffe://${TRUST_DOMAIN}/ns/${K8S_NAMESPACE}/sa/b`,
} as const;
/** The destination_service label of service b. */
export const SERVICE_B = `b.${K8S_NAMESPACE}`;

export type Node = 'cp' | 'a' | 'b' | 'plain';
export type Pod = 'a' | 'b';
const NODES: readonly Node[] = ['cp', 'a', 'b', 'plain'];
const CLUSTER_IP_GUARD = 'tsmesh-test/cluster-ip-never-leaves';

const must = (command: string, args: readonly string[]): Promise<string> => mustIn(command, args, { cwd: REPO });

export interface LabOptions {
  /** The control plane's --cert-ttl (workload and serving certificates). */
  certTtl?: string;
  /** The proxies' TSMESH_DRAIN_DURATION. */
  drainDuration?: string;
}

export interface AConfigOptions {
  /** The identity a expects of b's endpoint. */
  bIdentity?: string;
  /** false: service b has no endpoints (b left the service). */
  bEndpoint?: boolean;
}

export interface BConfigOptions {
  mtlsMode?: 'STRICT' | 'PERMISSIVE';
}

export class MeshLab extends NamespaceLab<Node | 'br'> {
  private configVersion = 0;
  readonly proxies: Partial<Record<Pod, Managed>> = {};
  app: Managed | undefined;
  controlPlane: Managed | undefined;
  /** How long create() took. */
  setupMs = 0;

  private constructor(
    id: string,
    dir: string,
    readonly options: LabOptions,
  ) {
    const name = (n: string): string => `tsmesh-m-${id}-${n}`;
    super(id, dir, { br: name('br'), cp: name('cp'), a: name('a'), b: name('b'), plain: name('plain') });
  }

  /** Builds everything and waits until both proxies are ready; removes what it made if a step fails. */
  static async create(options: LabOptions = {}): Promise<MeshLab> {
    const dir = await mkdtemp(join(tmpdir(), 'tsmesh-mesh-'));
    const lab = new MeshLab(randomBytes(3).toString('hex'), dir, options);
    try {
      const t0 = Date.now();
      await lab.network();
      await Promise.all([lab.identities().then(() => lab.startControlPlane()), lab.init('a'), lab.init('b'), lab.startApp()]);
      await Promise.all((['a', 'b'] as const).map((pod) => lab.startProxy(pod)));
      lab.setupMs = Date.now() - t0;
      return lab;
    } catch (e) {
      const logs = lab.logs();
      await lab.destroy();
      throw new Error(`${(e as Error).message}\n${logs}`, { cause: e });
    }
  }

  private async network(): Promise<void> {
    for (const n of Object.values(this.ns)) await must('ip', ['netns', 'add', n]);
    const br = this.ns.br;
    await must('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
    await must('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
    await must('ip', ['-n', br, 'link', 'set', 'lo', 'up']);
    for (const node of NODES) {
      const ns = this.ns[node];
      const port = `v-${node}`;
      await must('ip', ['-n', br, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await must('ip', ['-n', br, 'link', 'set', port, 'master', 'br0', 'up']);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await must('ip', ['-n', ns, 'addr', 'add', `${ADDR[node]}/${PREFIX}`, 'dev', 'eth0']);
      await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    }
    // Pod a reaches Services by ClusterIP; the redirect takes every such
    // connection before it leaves, and this rule drops and counts any packet
    // that would still carry a ClusterIP as its destination.
    await must('ip', ['-n', this.ns.a, 'route', 'add', SERVICE_CIDR, 'dev', 'eth0']);
    await this.mustIn('a', ['iptables-nft', '-w', '-A', 'OUTPUT', '-d', SERVICE_CIDR, '-m', 'comment', '--comment', CLUSTER_IP_GUARD, '-j', 'DROP']);
  }

  /** The CA, both pods' tokens and trust bundle; files the proxies (uid 1337) read. */
  private async identities(): Promise<void> {
    await chmod(this.dir, 0o755);
    const r = await run(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'ca', 'init', '--out', join(this.dir, 'ca'), '--trust-domain', TRUST_DOMAIN], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`tsmesh ca init failed: ${r.stderr}`);
    await copyFile(join(this.dir, 'ca', 'root-cert.pem'), this.path('root-cert.pem'));
    await chmod(this.path('root-cert.pem'), 0o644);
    const tokens: { token: string; spiffeId: string }[] = [];
    for (const pod of ['a', 'b'] as const) {
      const token = randomBytes(24).toString('hex');
      tokens.push({ token, spiffeId: IDENTITY[pod] });
      await writeFile(this.path(`${pod}.token`), token + '\n', { mode: 0o400 });
      await chown(this.path(`${pod}.token`), PROXY_USER.uid!, PROXY_USER.gid!);
      await this.writeConfig(pod, pod === 'a' ? this.aConfig() : this.bConfig());
    }
    await writeFile(this.path('tokens.json'), JSON.stringify({ tokens }), { mode: 0o600 });
  }

  private async startControlPlane(): Promise<void> {
    this.controlPlane = this.spawnIn('control-plane', 'cp', [
      process.execPath,
      '--import',
      'tsx',
      'cli/main.ts',
      'control-plane',
      '--ca-dir',
      join(this.dir, 'ca'),
      '--token-file',
      this.path('tokens.json'),
      '--host',
      ADDR.cp,
      '--serving-ip',
      ADDR.cp,
      '--port',
      String(CA_PORT),
      '--admin-port',
      String(CP_ADMIN_PORT),
      ...(this.options.certTtl ? ['--cert-ttl', this.options.certTtl] : []),
    ]);
    await waitFor(
      'the control plane to be ready',
      async () => {
        if (!this.controlPlane!.running) throw new GiveUp('the control plane exited');
        const r = await this.curl('cp', [`http://${ADDR.cp}:${CP_ADMIN_PORT}/readyz`]);
        return r.status === 200 ? true : undefined;
      },
      60_000,
      200,
    );
  }

  /** `tsmesh init` with its defaults, as the init container runs it. */
  private async init(pod: Pod): Promise<void> {
    const r = await this.exec(pod, [process.execPath, '--import', 'tsx', 'cli/main.ts', 'init'], {}, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`tsmesh init in ${pod} failed:\n${r.stdout}\n${r.stderr}`);
  }

  private async startApp(): Promise<void> {
    this.app = this.spawnIn(
      'app-b',
      'b',
      [process.execPath, '--import', 'tsx', 'test/netns/mesh-app.ts', String(APP_HTTP_PORT), String(APP_ECHO_PORT)],
      APP_USER,
    );
    await this.app.line((l) => l.includes('"ready":true'), 30_000);
  }

  /** Starts `tsmesh proxy` in a pod as uid 1337 and waits for /ready. */
  async startProxy(pod: Pod): Promise<Managed> {
    const proxy = this.spawnProxy(pod, {
      controlPlaneAddress: `${ADDR.cp}:${CA_PORT}`,
      podIp: ADDR[pod],
      podNamespace: K8S_NAMESPACE,
      serviceAccount: pod,
      trustDomain: TRUST_DOMAIN,
      tokenPath: this.path(`${pod}.token`),
      trustBundlePath: this.path('root-cert.pem'),
      drainDuration: this.options.drainDuration ?? '10s',
      args: ['--config-file', this.path(`${pod}.config.json`)],
      user: PROXY_USER,
    });
    this.proxies[pod] = proxy;
    await this.waitProxyReady(pod, proxy);
    return proxy;
  }

  /** Kills a pod's proxy (SIGKILL, by PID) and starts a new one. */
  async restartProxy(pod: Pod): Promise<Managed> {
    const old = this.proxies[pod];
    if (old?.running) {
      old.signal('SIGKILL');
      await old.exited;
    }
    return this.startProxy(pod);
  }

  /** TCP sockets in `state` (an ss state filter, e.g. close-wait) on local port `port` in a namespace. */
  async sockets(node: Node, state: string, port: number): Promise<string[]> {
    const out = await this.mustIn(node, ['ss', '-Htn', 'state', state, `( sport = :${port} )`]);
    return out.split('\n').filter((l) => l.trim() !== '');
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** A's config: service b on the ClusterIP, HTTP (auto) on 80 -> 8080 and opaque TCP on 9000. */
  aConfig(opts: AConfigOptions = {}): object {
    return {
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'ProxyConfig',
      version: '',
      mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT' },
      services: [
        {
          name: 'b',
          namespace: K8S_NAMESPACE,
          clusterIPs: [SERVICE_IP],
          ports: [
            { port: 80, name: 'http', protocol: 'auto', targetPort: APP_HTTP_PORT },
            { port: APP_ECHO_PORT, name: 'echo', protocol: 'tcp', targetPort: APP_ECHO_PORT },
          ],
          endpoints: opts.bEndpoint === false ? [] : [{ address: ADDR.b, identity: opts.bIdentity ?? IDENTITY.b }],
        },
      ],
      inbound: {},
    };
  }

  /** B's config: no services to call; inbound mTLS mode as given. */
  bConfig(opts: BConfigOptions = {}): object {
    return {
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'ProxyConfig',
      version: '',
      mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT' },
      services: [],
      inbound: { mtlsMode: opts.mtlsMode ?? 'STRICT' },
    };
  }

  /** Writes a pod's config file (whole, by rename, as kubelet swaps a ConfigMap) and returns its version. */
  async writeConfig(pod: Pod, config: object): Promise<string> {
    const version = `${pod}-${++this.configVersion}`;
    const file = this.path(`${pod}.config.json`);
    await writeFile(`${file}.tmp`, JSON.stringify({ ...config, version }, null, 2), { mode: 0o644 });
    await rename(`${file}.tmp`, file);
    return version;
  }

  /** Writes a pod's config and waits until its proxy's /config shows it. */
  async applyConfig(pod: Pod, config: object): Promise<string> {
    const version = await this.writeConfig(pod, config);
    await waitFor(
      `proxy ${pod} to take config ${version}`,
      async () => {
        const r = await this.curl(pod, [`http://127.0.0.1:${ADMIN_PORT}/config`]);
        return r.status === 200 && (JSON.parse(r.body) as { version?: string }).version === version ? true : undefined;
      },
      15_000,
      100,
    );
    return version;
  }

  /** A proxy's admin endpoint, fetched from the plain namespace across the bridge (as a scraper would). */
  async admin(pod: Pod, path: string): Promise<string> {
    const r = await this.curl('plain', [`http://${ADDR[pod]}:${ADMIN_PORT}${path}`]);
    if (r.status !== 200) throw new Error(`GET ${path} on ${pod}'s admin port: ${r.status} ${r.error} ${r.body}`);
    return r.body;
  }

  /** Requests B's app logged (lines of mesh-app.ts) whose path starts with `prefix`. */
  appRequests(prefix: string): { protocol: string; path: string; peer: string }[] {
    return (this.app?.stdout ?? '')
      .split('\n')
      .filter((l) => l.includes('"event":"request"'))
      .map((l) => JSON.parse(l) as { protocol: string; path: string; peer: string })
      .filter((r) => r.path.startsWith(prefix));
  }

  /** Packets dropped in a because they still carried a ClusterIP after nat (must stay 0). */
  async clusterIpLeaks(): Promise<number> {
    const out = await this.mustIn('a', ['iptables-nft', '-w', '-L', 'OUTPUT', '-v', '-n', '-x']);
    const line = out.split('\n').find((l) => l.includes(CLUSTER_IP_GUARD));
    if (!line) throw new Error(`the ClusterIP guard rule is gone from a's OUTPUT chain:\n${out}`);
    return Number(line.trim().split(/\s+/)[0]);
  }
}
