// `tsmesh demo` as root: every workload in a network namespace of its own,
// exactly as in a pod.
//
//   host   bridge tsmd<id> with 10.244.N.1/24 (N: the first of 100-199 no
//          route of this machine uses); the control plane listens there
//   pods   one namespace each, eth0 (a veth on the bridge) with 10.244.N.10+i;
//          `tsmesh init` redirects; the app as uid 1000 on 8080; `tsmesh
//          proxy` as uid 1337 on 15001/15006/15020, its certificate and
//          config from the control plane
//
// Apps call Services by ClusterIP (SERVICE_CIDR), which no namespace holds:
// the pods route it onto eth0 only so that connect() finds a route, the
// redirect sends every such connection to the sidecar, and a filter rule
// drops any packet still addressed to it after nat, so none ever leaves.
// Pods have no default route; the host does not forward between the bridge
// and anything else on its own (no NAT, no route to the service range).
//
// Every process is started here and ended by its PID; destroy() then deletes
// the namespaces (their veths go with them) and the bridge.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inNamespace, Managed, must, netnsUnavailable, type RunAs, waitFor, GiveUp } from '../lib/netns.js';
import { join } from 'node:path';
import { CA_FILES } from '../ca/material.js';
import { PROXY_ENV, PROXY_NODE_OPTIONS } from '../contract/env.js';
import { CLUSTER_IPS, NAMESPACE, SERVICE_PORT, WORKLOADS } from './topology.js';

export const SERVICE_CIDR = '10.96.10.0/24';
export const APP_PORT = 8080;
export const SIDECAR_ADMIN_PORT = 15020;
export const PROXY_USER: RunAs = { uid: 1337, gid: 1337 };
const APP_USER: RunAs = { uid: 1000, gid: 1000 };
const PREFIX = 24;
const CLUSTER_IP_GUARD = 'tsmesh-demo/cluster-ip-never-leaves';
/** Output kept per process, for reports when something fails. */
const KEEP_CHARS = 64 * 1024;

export type DemoMode = 'netns' | 'loopback';

/** What the demo's workloads give back, whatever the mode. */
export interface DemoWorkloads {
  /** Base URL of each workload's sidecar admin server. */
  adminUrls: ReadonlyMap<string, string>;
  load: { stop(): void; readonly counts: { ok: number; failed: number } };
}

/** netns where this machine allows it (root, ip, iptables, setpriv); loopback otherwise, with the reason. */
export async function chooseDemoMode(requested: DemoMode | 'auto' = 'auto'): Promise<{ mode: DemoMode; reason?: string }> {
  if (requested === 'loopback') return { mode: 'loopback', reason: '--mode=loopback' };
  const why = await netnsUnavailable('network namespace mode', [
    ['ip', 'iproute2'],
    ['setpriv', 'util-linux'],
    ['iptables', 'iptables'],
    ['iptables-nft-restore', 'iptables'],
  ]);
  if (why && requested === 'netns') throw new Error(`--mode=netns: ${why}`);
  return why ? { mode: 'loopback', reason: why } : { mode: 'netns' };
}

// The CLI and the app entry of this build: .ts files run through tsx, the compiled .js as they are.
const HERE = fileURLToPath(import.meta.url);
const TS = HERE.endsWith('.ts');
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const node = (script: string): string[] => [process.execPath, ...(TS ? ['--import', 'tsx'] : []), fileURLToPath(new URL(`../${script}${TS ? '.ts' : '.js'}`, import.meta.url))];

/** A process named by PID and start time (field 22 of /proc/<pid>/stat): a reused PID does not match. */
function ownerAlias(pid: number): string {
  let start = '0';
  try {
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '0';
  } catch {
    // No such process.
  }
  return `tsmesh-demo pid=${pid} start=${start}`;
}

/** The host's end of the pods' network, and each pod's namespace and address. */
export class DemoNetwork {
  private readonly processes: Managed[] = [];
  private readonly namespaces: string[] = [];
  private bridgeCreated = false;
  private destroyed = false;
  /** Every process started here, even after it ended (for checks that none outlives destroy()). */
  readonly startedPids: number[] = [];
  readonly pods = new Map<string, { ns: string; ip: string }>();

  private constructor(
    readonly id: string,
    readonly subnet: number,
  ) {}

  get bridge(): string {
    return `tsmd${this.id}`;
  }

  get hostAddress(): string {
    return `10.244.${this.subnet}.1`;
  }

  ip(pod: string): string {
    return this.pods.get(pod)!.ip;
  }

  /**
   * Removes the networks of demos that ended without their cleanup (SIGKILL,
   * a crash): a bridge whose alias names a process that is gone, its veths
   * and its namespaces. A namespace with a process still in it is left, and
   * said. Returns what was removed.
   */
  static async removeAbandoned(log: (line: string) => void = () => undefined): Promise<string[]> {
    const removed: string[] = [];
    const bridges = JSON.parse((await must('ip', ['-j', 'link', 'show', 'type', 'bridge'])) || '[]') as { ifname: string; ifalias?: string }[];
    const namespaces = (await must('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!);
    const links = JSON.parse((await must('ip', ['-j', 'link', 'show'])) || '[]') as { ifname: string }[];
    for (const { ifname, ifalias } of bridges) {
      const owner = /^tsmesh-demo pid=(\d+) start=(\d+)$/.exec(ifalias ?? '');
      if (!ifname.startsWith('tsmd') || !owner || ownerAlias(Number(owner[1])) === ifalias) continue;
      const id = ifname.slice('tsmd'.length);
      for (const ns of namespaces.filter((n) => n.startsWith(`tsmesh-demo-${id}-`))) {
        const pids = (await must('ip', ['netns', 'pids', ns])).trim();
        if (pids) {
          log(`left namespace ${ns} of an abandoned demo network: processes ${pids.split('\n').join(', ')} still run in it`);
          continue;
        }
        await must('ip', ['netns', 'del', ns]);
        removed.push(ns);
      }
      for (const l of links.filter((l) => l.ifname.startsWith(`${ifname}-`))) {
        await must('ip', ['link', 'del', l.ifname]).catch(() => undefined);
        removed.push(l.ifname);
      }
      await must('ip', ['link', 'del', ifname]);
      removed.push(ifname);
      log(`removed the network of a demo that ended without cleaning up (${ifalias}): ${ifname} and its namespaces`);
    }
    return removed;
  }

  /** The bridge and a namespace per pod; everything made so far is removed if a step fails. */
  static async create(podNames: readonly string[]): Promise<DemoNetwork> {
    const routes = await must('ip', ['-4', 'route', 'show']);
    const subnet = Array.from({ length: 100 }, (_, i) => 100 + i).find((n) => !routes.includes(`10.244.${n}.`));
    if (subnet === undefined) throw new Error('every range 10.244.100-199.0/24 is routed on this machine already; remove an old demo bridge (ip link del tsmd...)');
    const net = new DemoNetwork(randomBytes(3).toString('hex'), subnet);
    try {
      await must('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
      net.bridgeCreated = true;
      // Whose it is, so that a later demo can tell an abandoned network (its demo killed outright) from a live one.
      await must('ip', ['link', 'set', net.bridge, 'alias', ownerAlias(process.pid)]);
      await must('ip', ['addr', 'add', `${net.hostAddress}/${PREFIX}`, 'dev', net.bridge]);
      await must('ip', ['link', 'set', net.bridge, 'up']);
      for (const [i, pod] of podNames.entries()) {
        const ns = `tsmesh-demo-${net.id}-${pod}`;
        const ip = `10.244.${subnet}.${10 + i}`;
        const hostEnd = `${net.bridge}-${i}`;
        await must('ip', ['netns', 'add', ns]);
        net.namespaces.push(ns);
        await must('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
        await must('ip', ['link', 'set', hostEnd, 'master', net.bridge, 'up']);
        await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        await must('ip', ['-n', ns, 'addr', 'add', `${ip}/${PREFIX}`, 'dev', 'eth0']);
        await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
        await must('ip', ['-n', ns, 'route', 'add', SERVICE_CIDR, 'dev', 'eth0']);
        net.pods.set(pod, { ns, ip });
      }
      return net;
    } catch (e) {
      await net.destroy();
      throw e;
    }
  }

  /** `tsmesh init` with its defaults in a pod, as the init container runs it; then the ClusterIP guard. */
  async init(pod: string): Promise<void> {
    const { ns } = this.pods.get(pod)!;
    const [ip, ...init] = inNamespace(ns, [...node('cli/main'), 'init']);
    await must(ip!, init, { cwd: ROOT, timeoutMs: 60_000 });
    const [, ...guard] = inNamespace(ns, ['iptables', '-w', '-A', 'OUTPUT', '-d', SERVICE_CIDR, '-m', 'comment', '--comment', CLUSTER_IP_GUARD, '-j', 'DROP']);
    await must(ip!, guard);
  }

  /** Starts a program of this build (e.g. 'cli/main') in a pod, tracked for destroy(). */
  start(pod: string, name: string, script: string, args: readonly string[], as: RunAs, env: Record<string, string> = {}): Managed {
    if (this.destroyed) throw new Error('the demo network is gone');
    // Not TSMESH_* from outside; nor a coverage directory another uid cannot write to.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TSMESH_') && k !== 'NODE_V8_COVERAGE'));
    const [ip, ...argv] = inNamespace(this.pods.get(pod)!.ns, [...node(script), ...args], as);
    // A process group of its own: Ctrl-C reaches the demo, which stops its processes in order.
    const child = spawn(ip!, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...base, ...env }, detached: true });
    child.stdin?.on('error', () => undefined);
    const managed = new Managed(name, child, KEEP_CHARS);
    this.processes.push(managed);
    if (child.pid !== undefined) this.startedPids.push(child.pid);
    return managed;
  }

  /** The last lines of every process's output. */
  logs(lines = 20): string {
    return this.processes.map((p) => p.tail(lines)).join('\n');
  }

  /** Ends every process (by PID: TERM, then KILL), then deletes the namespaces and the bridge. Safe to call twice. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await Promise.all(this.processes.map((p) => p.stop(2000)));
    this.processes.length = 0;
    // The host end first: deleting a namespace frees its veth only later, in the kernel's own time.
    for (const [i, ns] of this.namespaces.splice(0).entries()) {
      await must('ip', ['link', 'del', `${this.bridge}-${i}`]).catch(() => undefined);
      await must('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
    if (this.bridgeCreated) await must('ip', ['link', 'del', this.bridge]).catch(() => undefined);
    this.bridgeCreated = false;
  }
}

export interface NetnsWorkloadsOptions {
  /** host:port of the control plane's CA and discovery stream. */
  caAddress: string;
  /** Holds `<workload>.token` (readable by uid 1337) and the trust bundle. */
  dir: string;
  trustDomain: string;
  rps: number;
  /** The sidecars' TSMESH_LOG_LEVEL. */
  logLevel: string;
}

/** Every workload as a pod (init, app, sidecar), then the traffic generator in loadgen's pod. */
export async function startNetnsWorkloads(net: DemoNetwork, opts: NetnsWorkloadsOptions): Promise<DemoWorkloads> {
  await Promise.all(WORKLOADS.map((w) => startPod(net, w.name, w.service ? w.calls : undefined, opts)));
  const load = await startPodLoad(net, 'loadgen', `${serviceUrl('web')}/catalog`, opts.rps);
  return { adminUrls: new Map(WORKLOADS.map((w) => [w.name, `http://${net.ip(w.name)}:${SIDECAR_ADMIN_PORT}`])), load };
}

const serviceUrl = (service: string): string => `http://${CLUSTER_IPS[service]}:${SERVICE_PORT}`;

/** Starts a pod's app (when it serves: the services it calls) and its sidecar; resolves once the sidecar is ready. */
async function startPod(net: DemoNetwork, name: string, serves: readonly string[] | undefined, opts: NetnsWorkloadsOptions): Promise<void> {
  await net.init(name);
  if (serves) {
    const upstreams = Object.fromEntries(serves.map((svc) => [svc, serviceUrl(svc)]));
    const app = net.start(name, `${name} app`, 'demo/app-main', ['app', name, String(APP_PORT), JSON.stringify(upstreams)], APP_USER);
    await app.line((l) => l.includes('"ready":true'), 60_000);
  }
  const proxy = net.start(name, `${name} sidecar`, 'cli/main', ['proxy'], PROXY_USER, {
    [PROXY_ENV.CONTROL_PLANE_ADDRESS]: opts.caAddress,
    [PROXY_ENV.TOKEN_PATH]: join(opts.dir, `${name}.token`),
    [PROXY_ENV.TRUST_BUNDLE_PATH]: join(opts.dir, CA_FILES.rootCert),
    [PROXY_ENV.POD_NAME]: name,
    [PROXY_ENV.POD_NAMESPACE]: NAMESPACE,
    [PROXY_ENV.POD_IP]: net.ip(name),
    [PROXY_ENV.SERVICE_ACCOUNT]: name,
    [PROXY_ENV.TRUST_DOMAIN]: opts.trustDomain,
    [PROXY_ENV.LOG_LEVEL]: opts.logLevel,
    [PROXY_ENV.DRAIN_DURATION]: '1s',
    NODE_OPTIONS: PROXY_NODE_OPTIONS,
  });
  await waitFor(
    `the ${name} sidecar to be ready (certificate and config)`,
    async () => {
      if (!proxy.running) throw new GiveUp(`it exited:\n${proxy.tail()}`);
      const res = await fetch(`http://${net.ip(name)}:${SIDECAR_ADMIN_PORT}/ready`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.ok ? true : undefined;
    },
    60_000,
    200,
  );
}

/** The traffic generator in its pod, as uid 1000; its counts come from its output. */
async function startPodLoad(net: DemoNetwork, pod: string, url: string, rps: number): Promise<DemoWorkloads['load']> {
  const p = net.start(pod, 'traffic generator', 'demo/app-main', ['load', url, String(rps)], APP_USER);
  await p.line((l) => l.includes('"ready":true'), 60_000);
  return {
    stop: () => p.child.stdin?.write('stop\n'),
    get counts() {
      const last = p.stdout.trimEnd().split('\n').reverse().find((l) => l.startsWith('{"ok"'));
      return last ? (JSON.parse(last) as { ok: number; failed: number }) : { ok: 0, failed: 0 };
    },
  };
}
