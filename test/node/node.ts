// Test helpers for the real-node tier: a one-node Kubernetes cluster (etcd,
// kube-apiserver, controller manager, scheduler, containerd, kubelet,
// kube-proxy, CoreDNS) in network and mount namespaces of its own, started
// and stopped by test/node/node.sh from what test/node/build.sh built.
//
// nodeTier() says whether this machine can run it, and if not, why;
// startNode() brings a node up and returns its kubeconfig and stop().
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { clusterBinDir } from '../k8s/apiserver.js';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..');
export const nodeScript = join(here, 'node.sh');
export const buildScript = join(here, 'build.sh');

export function nodeCacheDir(): string {
  return process.env['TSMESH_NODE_CACHE'] ?? join(here, '.cache');
}
/** kubectl of the node's release, built by build.sh. */
export function kubectlPath(): string {
  return join(nodeCacheDir(), 'bin', 'kubectl');
}
/** The tsmesh image built by build.sh, as the kubelet names it. */
export const TSMESH_IMAGE = 'docker.io/library/tsmesh:node';
/** The test apps' image (build.sh): the rootfs and node of the tsmesh image, and test/node/apps bundles in /opt/tsmesh-test. */
export const TESTAPPS_IMAGE = 'docker.io/library/tsmesh-testapps:node';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && isExecutable(join(d, cmd)));
}

/** The Debian packages the node needs, by a command or file each installs. */
const PACKAGES: [check: () => boolean, pkg: string][] = [
  [() => onPath('containerd') && onPath('ctr'), 'containerd'],
  [() => onPath('runc'), 'runc'],
  [() => isExecutable('/usr/lib/cni/bridge') || isExecutable('/opt/cni/bin/bridge'), 'containernetworking-plugins'],
  [() => onPath('iptables'), 'iptables'],
  [() => onPath('conntrack'), 'conntrack'],
  [() => onPath('mmdebstrap'), 'mmdebstrap'],
  [() => onPath('ip'), 'iproute2'],
  [() => onPath('unshare') && onPath('nsenter') && onPath('setpriv'), 'util-linux'],
  [() => onPath('openssl'), 'openssl'],
  [() => onPath('curl'), 'curl'],
];

export interface TierStatus {
  ok: boolean;
  reason: string;
}

/**
 * Can the real-node tier run here? Linux, root, the Debian packages, and the
 * binaries and images built (test/node/build.sh, which `npm test` runs when
 * the rest is there). The reason names what is missing and how to get it.
 */
export function nodeTier(): TierStatus {
  if (process.platform !== 'linux') return { ok: false, reason: `real node tier SKIPPED: needs Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'real node tier SKIPPED: needs root (network and mount namespaces, cgroups, containerd)' };
  const missing = PACKAGES.filter(([check]) => !check()).map(([, pkg]) => pkg);
  if (missing.length > 0) return { ok: false, reason: `real node tier SKIPPED: missing Debian packages: apt-get install ${missing.join(' ')} (.ci/run installs them)` };
  for (const b of ['etcd', 'kube-apiserver', 'kube-controller-manager']) {
    if (!isExecutable(join(clusterBinDir(), b))) return { ok: false, reason: `real node tier SKIPPED: ${join(clusterBinDir(), b)} is not built; run test/cluster/build.sh` };
  }
  for (const b of ['kubelet', 'kube-proxy', 'kube-scheduler', 'kubectl', 'coredns', 'pause']) {
    const p = join(nodeCacheDir(), 'bin', b);
    if (!isExecutable(p)) return { ok: false, reason: `real node tier SKIPPED: ${p} is not built; run test/node/build.sh (npm run test:node)` };
  }
  for (const i of ['pause', 'coredns', 'tsmesh', 'testapps']) {
    const p = join(nodeCacheDir(), 'images', `${i}.tar`);
    if (!existsSync(p)) return { ok: false, reason: `real node tier SKIPPED: ${p} is not built; run test/node/build.sh (npm run test:node)` };
  }
  return { ok: true, reason: '' };
}

/** For a mocha `before` hook: skips the suite, saying why, when the tier cannot run. */
export function skipWithoutNode(ctx: Mocha.Context): void {
  const tier = nodeTier();
  if (!tier.ok) {
    console.log(`      ${tier.reason}`);
    ctx.skip();
  }
}

export interface TestNode {
  /** State folder (certificates, configs, logs/*.log, timings). */
  dir: string;
  /** Admin kubeconfig: the API server through the relay on the host's loopback. */
  kubeconfigPath: string;
  /**
   * The environment for kubectl and scripts that run it against the node:
   * KUBECONFIG, KUBECACHEDIR in the state folder (kubectl's discovery cache
   * would otherwise land in root's home), the node's binaries first on PATH.
   */
  env: NodeJS.ProcessEnv;
  kc: KubeConfig;
  /** PID of the process holding the node's namespaces. */
  anchorPid: number;
  /** Bring-up phases in ms, as node.sh measured them. */
  timings: Record<string, number>;
  /** argv prefix that runs a command in the node's network and mount namespaces. */
  enter: string[];
  /** The node's cgroup (in every hierarchy), network and mount namespaces, to prove they are gone after stop(). */
  cgroup: string;
  netns: string;
  mntns: string;
  /** Stops every process of the node and removes its state. Safe to call twice. */
  stop(): Promise<void>;
}

function lastValue(stdout: string, key: string): string | undefined {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}

/**
 * Starts a node and waits until it is Ready with DNS serving. The node is
 * stopped when this process exits (a watchdog of node.sh), on SIGINT and
 * SIGTERM (handlers here, for the time the node runs), and by stop().
 */
export async function startNode(): Promise<TestNode> {
  const tier = nodeTier();
  if (!tier.ok) throw new Error(tier.reason);
  const env = { ...process.env, TSMESH_NODE_PARENT_PID: String(process.pid) };
  let stdout: string;
  try {
    ({ stdout } = await execFileP('bash', [nodeScript, 'start'], { env, maxBuffer: 4 << 20 }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`test/node/node.sh start failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
  const dir = lastValue(stdout, 'TSMESH_NODE_DIR');
  const kubeconfigPath = lastValue(stdout, 'KUBECONFIG');
  const anchorPid = Number(lastValue(stdout, 'TSMESH_NODE_ANCHOR_PID'));
  if (!dir || !kubeconfigPath || !anchorPid) throw new Error(`unexpected output from node.sh start:\n${stdout}`);

  let stopped: Promise<void> | undefined;
  const stopSync = (): void => {
    spawnSync('bash', [nodeScript, 'stop', dir], { stdio: 'inherit' });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    console.error(`\n${sig}: stopping the test node in ${dir}`);
    stopSync();
    process.kill(process.pid, sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await execFileP('bash', [nodeScript, 'stop', dir]);
    })();
    return stopped;
  };

  const timings: Record<string, number> = {};
  for (const line of readFileSync(join(dir, 'timings'), 'utf8').trim().split('\n')) {
    const i = line.lastIndexOf(' ');
    timings[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const id = readFileSync(join(dir, '.tsmesh-node'), 'utf8').trim();
  return {
    dir,
    kubeconfigPath,
    env: { ...process.env, KUBECONFIG: kubeconfigPath, KUBECACHEDIR: join(dir, 'kube-cache'), PATH: `${join(nodeCacheDir(), 'bin')}${delimiter}${process.env['PATH'] ?? ''}` },
    kc,
    anchorPid,
    timings,
    enter: ['nsenter', '--target', String(anchorPid), '--net', '--mount', '--'],
    cgroup: `tsmesh-node-${id}`,
    netns: readlinkSync(`/proc/${anchorPid}/ns/net`),
    mntns: readlinkSync(`/proc/${anchorPid}/ns/mnt`),
    stop,
  };
}

/**
 * The host settings a node could change: the global sysctls the kubelet and
 * kube-proxy set (covered by files inside the node's mount namespace) and the
 * per-namespace ones they set in theirs, read in the host's namespaces.
 */
export const HOST_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/netfilter/nf_conntrack_max',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
  'net/bridge/bridge-nf-call-iptables',
];

export interface HostState {
  mounts: string[];
  links: string[];
  sysctls: Record<string, string>;
  iptables: string;
}

/** What of the host a node must leave as it found it. */
export async function hostState(): Promise<HostState> {
  const sysctls: Record<string, string> = {};
  for (const s of HOST_SYSCTLS) {
    try {
      sysctls[s] = readFileSync(`/proc/sys/${s}`, 'utf8').trim();
    } catch {
      sysctls[s] = '(absent)';
    }
  }
  const links = (await run('ip', ['-o', 'link', 'show'])).trim().split('\n').map((l) => l.split(':')[1]!.trim().split('@')[0]!);
  // Without comments and the chains' packet counters, which traffic moves.
  const iptables = (await run('iptables-save', []))
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
    .join('\n');
  return { mounts: readFileSync('/proc/mounts', 'utf8').trim().split('\n'), links: links.sort(), sysctls, iptables };
}

/**
 * What of a stopped node is still there: its folder, processes in its
 * namespaces, its cgroups, a bind mount of its network namespace. Empty when
 * stop() left nothing.
 */
function commandOf(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 200) || '?';
  } catch {
    return 'gone';
  }
}

/** Clock ticks since boot (USER_HZ, 100 on Linux), the unit of a process's start time in /proc/PID/stat. */
function bootTicks(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}

/** A process's start time in clock ticks since boot; Infinity when it is gone. */
function startTicks(pid: string): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command, which may hold spaces and parentheses: state is field 3, starttime field 22.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return Infinity;
  }
}

/**
 * `stoppedAt` (bootTicks() when the stop began): a process started after it
 * is not counted. Once the node's namespaces are freed the kernel may give
 * their inode numbers to new namespaces of other programs, and a process of
 * those would look like one of the node's.
 */
export function nodeResidue(node: Pick<TestNode, 'dir' | 'cgroup' | 'netns' | 'mntns'>, stoppedAt = Infinity): string[] {
  const left: string[] = [];
  if (existsSync(node.dir)) left.push(`folder ${node.dir}`);
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    if (startTicks(pid) > stoppedAt) continue;
    for (const ns of ['net', 'mnt'] as const) {
      try {
        if (readlinkSync(`/proc/${pid}/ns/${ns}`) === (ns === 'net' ? node.netns : node.mntns)) left.push(`process ${pid} (${commandOf(pid)}) in the node's ${ns} namespace`);
      } catch {
        // gone meanwhile, or a kernel thread
      }
    }
  }
  const mounts = readFileSync('/proc/mounts', 'utf8').trim().split('\n').map((l) => l.split(' '));
  for (const [, target, type] of mounts) {
    if ((type === 'cgroup' || type === 'cgroup2') && target!.startsWith('/sys/fs/cgroup') && existsSync(join(target!, node.cgroup))) left.push(`cgroup ${join(target!, node.cgroup)}`);
    if (type === 'nsfs') {
      try {
        if (`net:[${statSync(target!).ino}]` === node.netns) left.push(`the node's network namespace mounted at ${target}`);
      } catch {
        // unmounted meanwhile
      }
    }
    if (target!.startsWith(node.dir)) left.push(`mount ${target}`);
  }
  return left;
}

/**
 * The host as it was before the node, but for what other tiers running at the
 * same time make on the host: network namespaces they name in /run/netns, and
 * the demo's bridges and their veths (`tsmd<id>`, demo/netns.ts), which come
 * and go with its tests. The node makes no link on the host at all.
 */
export function assertHostAsBefore(before: HostState, now: HostState): void {
  const mine = (m: string): boolean => !/ \/run\/netns\//.test(m);
  const was = new Set(before.mounts);
  assert.deepEqual(now.mounts.filter((m) => mine(m) && !was.has(m)), [], 'mounts the host did not have');
  const hostLinks = (links: string[]): string[] => links.filter((l) => !l.startsWith('tsmd'));
  assert.deepEqual(hostLinks(now.links), hostLinks(before.links), 'the host\'s links');
  assert.deepEqual(now.sysctls, before.sysctls, 'the host\'s sysctls');
  assert.equal(now.iptables, before.iptables, 'the host\'s iptables rules');
}

/**
 * Stops the node and asserts that nothing of it is left and the host is as
 * `before`; returns how long stop took (ms). A process still exiting when
 * stop() returns is not one left behind: it has a few seconds to be gone.
 */
export async function stopLeavingNothing(node: TestNode, before: HostState): Promise<number> {
  const t0 = Date.now();
  const stoppedAt = bootTicks();
  await node.stop();
  const ms = Date.now() - t0;
  for (let waited = 0; nodeResidue(node, stoppedAt).length > 0 && waited < 5000; waited += 250) await sleep(250);
  assert.deepEqual(nodeResidue(node, stoppedAt), []);
  assertHostAsBefore(before, await hostState());
  return ms;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` every 500 ms until it gives a value (not undefined or false); throws after `timeoutMs`, with the last error. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(500);
  }
}

/** The repository's CLI (dist/, as build.sh compiled it) with the node's kubeconfig. */
export function tsmeshCli(node: TestNode, args: string[], timeoutMs = 240_000): Promise<string> {
  return run(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), ...args, '--kubeconfig', node.kubeconfigPath], { timeoutMs });
}

/** Waits until the control plane has set the injector's caBundle (it does when it starts): pods are injected from then on. */
export function injectorReady(node: TestNode): Promise<true> {
  return waitFor(
    async () => (await kubectl(node, ['get', 'mutatingwebhookconfiguration', 'tsmesh-sidecar-injector', '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}'])).length > 0,
    60_000,
    'the injector\'s caBundle',
  );
}

/** kubectl of the node's release against the node; throws with stderr on failure. */
export async function kubectl(node: TestNode, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return run(kubectlPath(), args, { ...opts, env: node.env });
}

/** Runs a program to its end; its stdout, or an error with the exit status and stderr. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<string> {
  return new Promise((resolveP, reject) => {
    const o: SpawnOptions = { env: opts.env ?? process.env, cwd: opts.cwd ?? REPO, stdio: ['pipe', 'pipe', 'pipe'] };
    const child = spawn(cmd, args, o);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveP(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}:\n${err.trim()}\n${out.trim()}`.trim()));
    });
    // A program that exits without reading its input closes the pipe first.
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input ?? '');
  });
}

/** Builds the tier (cached) the way `npm test` does; for a manual run of one file. */
export function buildNode(): void {
  execFileSync('bash', [buildScript], { stdio: 'inherit' });
}
