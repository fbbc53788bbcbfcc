// What the sidecar benchmarks (bench-sidecar.ts, bench-grpc.ts) share: a
// working folder, the project compiled as a container runs it, one CA for
// both sidecars (the control planes sign the tsmesh proxies' CSRs with it;
// `tsmesh ca issue` signs HAProxy's certificates), the tokens the control
// planes accept, and the processes of a pair of meshed pods in the
// namespaces of topology.ts: `tsmesh init`, a control plane per pod on
// loopback, `tsmesh proxy` or HAProxy as uid 1337.
import { chmodSync, chownSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROXY_NODE_OPTIONS } from '../../contract/env.js';
import type { SidecarTls } from './haproxy.js';
import { BenchNet, must, REPO, run, tail, type Placement, type Started } from './topology.js';

export const PROXY_UID = 1337;
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const TRUST_DOMAIN = 'cluster.local';
export const NAMESPACE = 'bench';
export const idOf = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/${NAMESPACE}/sa/${sa}`;

/** With two or more CPUs: the load, the app and the control planes on CPU 0, both sidecars on CPU 1. */
export const PIN = availableParallelism() >= 2 && process.env['BENCH_PIN'] !== '0';
export const LOAD: Placement = { cpu: PIN ? 0 : undefined };
export const SIDECAR: Placement = { cpu: PIN ? 1 : undefined, uid: PROXY_UID };

/** A positive number from the environment, or `fallback` when unset. */
export function envNumber(name: string, fallback: number, integer = false): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`${name}=${JSON.stringify(raw)} is not a positive ${integer ? 'whole ' : ''}number`);
  return n;
}

/** The 1-minute load average: other work on the machine skews latencies and shares the sidecars' CPU. */
export const loadAverage = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const median = (values: readonly number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
export const ratio = (a: number, b: number): number => (b > 0 ? a / b : Number.NaN);

/** Polls `check` every 100 ms; fails with the logs' tails when a process of `logs` exits or time runs out. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logs: Started[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const p of logs) if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`${p.name} exited while waiting for ${what}:\n${tail(p.log)}`);
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${logs.map((p) => `\n--- ${p.name} (${p.log}):\n${tail(p.log)}`).join('')}`);
}

/** Whether `url` (http, on loopback in `ns`) answers 200 within a second. */
async function answers200(net: BenchNet, ns: string, url: string): Promise<boolean> {
  return (await net.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', url])).stdout === '200';
}

export class BenchPods {
  readonly work: string;
  readonly nets: BenchNet[] = [];
  /** The project compiled as a container runs it (node dist/cli/main.js), outside the shared dist/. */
  readonly build: string;
  readonly tsmesh: string[];

  /** `name`: the benchmark's, for its working folder and its build. */
  constructor(readonly name: string) {
    this.work = mkdtempSync(join(tmpdir(), `tsmesh-${name}-`));
    chmodSync(this.work, 0o755);
    this.build = join(REPO, 'node_modules', '.cache', `tsmesh-${name}`, 'dist');
    this.tsmesh = [process.execPath, join(this.build, 'cli', 'main.js')];
  }

  path(...parts: string[]): string {
    return join(this.work, ...parts);
  }

  /** A file the sidecars (uid 1337) can read. */
  sidecarFile(name: string, content: string | Buffer, mode = 0o600): string {
    const p = this.path(name);
    writeFileSync(p, content, { mode });
    chownSync(p, PROXY_UID, PROXY_UID);
    return p;
  }

  async newNet(): Promise<BenchNet> {
    const net = await BenchNet.create();
    this.nets.push(net);
    return net;
  }

  async destroy(): Promise<void> {
    for (const net of this.nets) await net.destroy();
  }

  /**
   * Compiles the project, makes the CA, HAProxy's certificates and the
   * control planes' tokens for the ServiceAccounts `client` and `server`.
   */
  async prepareMesh(): Promise<{ client: SidecarTls; server: SidecarTls }> {
    console.log(`building the project (tsc) into node_modules/.cache/tsmesh-${this.name} ...`);
    const build = await run(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', this.build], 120_000);
    if (build.code !== 0) {
      // tsc emits despite type errors; a missing entry point is what stops the benchmark.
      console.log(`  tsc reported errors (exit ${build.code}); running what it emitted:\n${build.stdout.split('\n').slice(0, 5).join('\n')}`);
    }
    await must(this.tsmesh[0]!, [...this.tsmesh.slice(1), '--help']);
    await must(this.tsmesh[0]!, [...this.tsmesh.slice(1), 'ca', 'init', '--out', this.path('ca'), '--trust-domain', TRUST_DOMAIN]);
    const haproxyTls = { client: await this.issue('client'), server: await this.issue('server') };
    const tokens = { client: `bench-client-${'0'.repeat(24)}`, server: `bench-server-${'0'.repeat(24)}` };
    const entries = Object.entries(tokens).map(([sa, token]) => `  - token: ${token}\n    spiffeId: ${idOf(sa)}\n`);
    writeFileSync(this.path('tokens.yaml'), `tokens:\n${entries.join('')}`, { mode: 0o600 });
    for (const [sa, token] of Object.entries(tokens)) this.sidecarFile(`${sa}.token`, token);
    this.sidecarFile('root-cert.pem', readFileSync(this.path('ca', 'root-cert.pem')), 0o644);
    return haproxyTls;
  }

  /** A proxy config file: the base every benchmark config shares, with `services` and `inbound`. */
  proxyConfig(file: string, over: { services: unknown[]; inbound: object; mesh?: object }): void {
    const config = { apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', version: 'bench-1', ...over, mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT', ...over.mesh } };
    this.sidecarFile(file, JSON.stringify(config), 0o644);
  }

  private async issue(sa: string): Promise<SidecarTls> {
    const dir = this.path(`haproxy-${sa}`);
    await must(this.tsmesh[0]!, [...this.tsmesh.slice(1), 'ca', 'issue', '--ca', this.path('ca'), '--spiffe-id', idOf(sa), '--out', dir]);
    const pem = readFileSync(join(dir, 'cert.pem'), 'utf8') + readFileSync(join(dir, 'key.pem'), 'utf8');
    return {
      certAndKey: this.sidecarFile(`haproxy-${sa}.pem`, pem),
      bundle: this.sidecarFile(`haproxy-${sa}-bundle.pem`, readFileSync(join(dir, 'bundle.pem')), 0o644),
    };
  }

  startHaproxy(net: BenchNet, name: string, ns: string, config: string, placement: Placement): Started {
    const file = this.sidecarFile(`${name}.cfg`, config, 0o644);
    // -db: foreground, no master process: the PID measured is the one doing the work.
    return net.start(name, ns, ['haproxy', '-db', '-f', file], this.path(`${name}.log`), placement);
  }

  /** `tsmesh init` in both namespaces: from here on they are meshed pods. */
  async meshPods(net: BenchNet): Promise<void> {
    for (const ns of [net.client, net.server]) await must('ip', ['netns', 'exec', ns, ...this.tsmesh, 'init'], 60_000);
  }

  /** A control plane in each pod's namespace on loopback (token file, the shared CA). */
  async startControlPlanes(net: BenchNet): Promise<void> {
    for (const [side, ns] of [['client', net.client], ['server', net.server]] as const) {
      const name = `control-plane-${side}`;
      const args = ['control-plane', '--ca-dir', this.path('ca'), '--token-file', this.path('tokens.yaml'), '--host', '127.0.0.1', '--port', '15012', '--admin-port', '15014'];
      const cp = net.start(name, ns, [...this.tsmesh, ...args], this.path(`${name}.log`), LOAD);
      await waitFor(name, () => answers200(net, ns, 'http://127.0.0.1:15014/healthz'), 20_000, [cp]);
    }
  }

  /** `tsmesh proxy` as ServiceAccount `sa` with the config file `configFile` (of this folder), node flags first. */
  startTsmeshProxy(net: BenchNet, name: string, ns: string, sa: 'client' | 'server', podIp: string, configFile: string, extraNodeFlags: readonly string[] = []): Started {
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      TSMESH_POD_NAME: `${sa}-0`,
      TSMESH_POD_NAMESPACE: NAMESPACE,
      TSMESH_POD_IP: podIp,
      TSMESH_SERVICE_ACCOUNT: sa,
      TSMESH_TRUST_DOMAIN: TRUST_DOMAIN,
      // One control plane per namespace, on loopback: its serving certificate names 127.0.0.1 and
      // the Service's DNS names, but no pod or node IP (control/plane.ts has no option for IP SANs).
      TSMESH_CONTROL_PLANE_ADDRESS: '127.0.0.1:15012',
      TSMESH_TOKEN_PATH: this.path(`${sa}.token`),
      TSMESH_TRUST_BUNDLE_PATH: this.path('root-cert.pem'),
      TSMESH_CONFIG_FILE: this.path(configFile),
      TSMESH_DRAIN_DURATION: '1s',
      // As in a pod (the injected container sets it).
      NODE_OPTIONS: PROXY_NODE_OPTIONS,
    };
    return net.start(name, ns, [this.tsmesh[0]!, ...extraNodeFlags, ...this.tsmesh.slice(1), 'proxy'], this.path(`${name}.log`), SIDECAR, env);
  }

  /** Waits for each proxy's /ready in its namespace. */
  async waitReady(net: BenchNet, proxies: readonly [Started, string][]): Promise<void> {
    for (const [p, ns] of proxies) await waitFor(`${p.name} /ready`, () => answers200(net, ns, 'http://127.0.0.1:15020/ready'), 20_000, [p]);
  }
}
