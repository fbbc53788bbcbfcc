// The benchmark's network: a client "pod" namespace and a server "pod"
// namespace joined by a veth pair, with addresses the benchmark assigns:
//   client pod 10.244.200.2/24, server pod 10.244.200.3/24, and the Service's
//   ClusterIP 10.96.200.10, held by the server namespace so that even a
//   connection that missed its redirect reaches only this benchmark.
// Processes are started inside them, optionally pinned to a CPU and run as
// another uid; destroy() ends them by PID (TERM, then KILL) and deletes the
// namespaces, which takes their iptables rules with them.
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { asUser, must as mustIn, netnsUnavailable, run as runIn, type RunResult } from '../../lib/netns.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export const ADDRESSES = {
  client: '10.244.200.2',
  server: '10.244.200.3',
  prefix: 24,
  clusterIp: '10.96.200.10',
  /** Only in the --policy configuration, as a split's second Service; never dialled. */
  canaryClusterIp: '10.96.200.11',
} as const;

export type { RunResult };

/** Runs a command to completion in the repository; killed by PID after timeoutMs. */
export const run = (command: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> => runIn(command, args, { cwd: REPO, timeoutMs });

export const must = (command: string, args: readonly string[], timeoutMs?: number): Promise<string> =>
  mustIn(command, args, { cwd: REPO, ...(timeoutMs === undefined ? {} : { timeoutMs }) });

/**
 * BENCH_NICE: a niceness for every process of the benchmark (e.g. -10), so
 * that other work on a shared machine takes less of their CPU. Unset: as is.
 */
const NICE = ((): number | undefined => {
  const raw = process.env['BENCH_NICE'];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < -20 || n > 19) throw new Error(`BENCH_NICE=${JSON.stringify(raw)} is not a niceness (-20 to 19)`);
  return n;
})();

export interface Placement {
  /** Pin to this CPU (taskset -c). */
  cpu?: number | undefined;
  /** Run as this uid and gid, without capabilities (setpriv). */
  uid?: number;
}

export interface Started {
  name: string;
  pid: number;
  child: ChildProcess;
  log: string;
}

/** Why the benchmark cannot run here, or undefined when it can. */
export function unavailable(): Promise<string | undefined> {
  return netnsUnavailable('the sidecar benchmark', [
    ['ip', 'iproute2'],
    ['setpriv', 'util-linux'],
    ['taskset', 'util-linux'],
    ['iptables-nft-restore', 'iptables'],
    ['curl', 'curl'],
    ['wrk', 'wrk'],
    ['haproxy', 'haproxy'],
  ]);
}

export class BenchNet {
  private readonly processes: Started[] = [];
  private destroyed = false;

  private constructor(
    readonly client: string,
    readonly server: string,
    private readonly clientIf: string,
    private readonly serverIf: string,
  ) {}

  static async create(): Promise<BenchNet> {
    const id = randomBytes(3).toString('hex');
    const net = new BenchNet(`tsmesh-bench-${id}-client`, `tsmesh-bench-${id}-server`, `tbc${id}`, `tbs${id}`);
    try {
      await must('ip', ['netns', 'add', net.client]);
      await must('ip', ['netns', 'add', net.server]);
      await must('ip', ['-n', net.client, 'link', 'add', net.clientIf, 'type', 'veth', 'peer', 'name', net.serverIf, 'netns', net.server]);
      const { prefix } = ADDRESSES;
      for (const [ns, dev, addrs] of [
        [net.client, net.clientIf, [`${ADDRESSES.client}/${prefix}`]],
        [net.server, net.serverIf, [`${ADDRESSES.server}/${prefix}`, `${ADDRESSES.clusterIp}/32`]],
      ] as const) {
        await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
        for (const a of addrs) await must('ip', ['-n', ns, 'addr', 'add', a, 'dev', dev]);
      }
      // The client reaches the ClusterIP over the link, as a pod reaches it through its node.
      await must('ip', ['-n', net.client, 'route', 'add', `${ADDRESSES.clusterIp}/32`, 'dev', net.clientIf]);
      return net;
    } catch (e) {
      await net.destroy();
      throw e;
    }
  }

  private wrap(ns: string, command: readonly string[], placement: Placement): string[] {
    const nice = NICE === undefined ? [] : ['nice', '-n', String(NICE)];
    const pin = placement.cpu === undefined ? [] : ['taskset', '-c', String(placement.cpu)];
    // `ip netns exec`, nice, taskset and setpriv (asUser) each exec the next: the child's PID is the program's own.
    return ['netns', 'exec', ns, ...nice, ...pin, ...asUser({ uid: placement.uid, gid: placement.uid }, command)];
  }

  /** Runs a command in a namespace to completion. */
  exec(ns: string, command: readonly string[], placement: Placement = {}, timeoutMs?: number): Promise<RunResult> {
    return run('ip', this.wrap(ns, command, placement), timeoutMs);
  }

  /** Starts a process in a namespace with its stdin, stdout and stderr piped to this one; the caller ends it. */
  spawnPiped(ns: string, command: readonly string[], placement: Placement = {}): ChildProcessWithoutNullStreams {
    return spawn('ip', this.wrap(ns, command, placement), { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** Starts a long-running process in a namespace; its stdout and stderr go to `log`. */
  start(name: string, ns: string, command: readonly string[], log: string, placement: Placement = {}, env: NodeJS.ProcessEnv = process.env): Started {
    if (this.destroyed) throw new Error('the benchmark network is gone');
    const fd = openSync(log, 'a');
    try {
      const child = spawn('ip', this.wrap(ns, command, placement), { cwd: REPO, stdio: ['ignore', fd, fd], env });
      if (child.pid === undefined) throw new Error(`${name} did not start`);
      const started = { name, pid: child.pid, child, log };
      this.processes.push(started);
      child.on('error', () => undefined);
      return started;
    } finally {
      closeSync(fd);
    }
  }

  /** Ends one process this object started: TERM, then KILL after graceMs. */
  async stop(p: Started, graceMs = 3000): Promise<void> {
    const i = this.processes.indexOf(p);
    if (i >= 0) this.processes.splice(i, 1);
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Ends every process still running (by PID), then deletes both namespaces. Safe to call twice. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await Promise.all([...this.processes].map((p) => this.stop(p, 1000)));
    for (const ns of [this.client, this.server]) await run('ip', ['netns', 'del', ns]);
  }
}

/** The last lines of a process's log, for error messages. */
export function tail(log: string, lines = 20): string {
  try {
    return readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
