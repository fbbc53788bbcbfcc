// Network namespaces for real-kernel tests of the redirects. A "pod"
// namespace and a "peer" namespace joined by a veth pair, with addresses the
// test assigns (10.244.1.0/24 and fd00:10:244:1::/64 on the link, a second
// peer range 10.244.2.0/24 and fd00:10:244:2::/64 for skip-CIDR checks).
// Nothing is sent to any address outside these namespaces. Everything is
// removed in destroy(), processes first (by PID), then the namespaces.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { inNamespace, must as mustIn, netnsUnavailable as unavailable, run as runIn, type RunAs, type RunOptions, type RunResult } from '../../lib/netns.js';

export type { RunAs, RunResult };

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Runs a command to completion in the repository (killed by PID after timeoutMs). */
export const run = (command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> => runIn(command, args, { cwd: REPO, ...options });

const must = (command: string, args: readonly string[]): Promise<string> => mustIn(command, args, { cwd: REPO });

/** Why these tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): Promise<string | undefined> {
  return unavailable('network namespace tests', [
    ['ip', 'iproute2'],
    ['setpriv', 'util-linux'],
    ['iptables-nft-save', 'iptables'],
    ['iptables-legacy-save', 'iptables'],
    ['ip6tables-nft-save', 'iptables'],
  ]);
}

export interface FamilyAddresses {
  readonly family: 'IPv4' | 'IPv6';
  readonly pod: string;
  readonly peer: string;
  /** A peer address in a second range, for skip-CIDR checks. */
  readonly peerOther: string;
  readonly otherCidr: string;
  readonly loopback: string;
}

export const IPV4: FamilyAddresses = {
  family: 'IPv4',
  pod: '10.244.1.2',
  peer: '10.244.1.3',
  peerOther: '10.244.2.3',
  otherCidr: '10.244.2.0/24',
  loopback: '127.0.0.1',
};

export const IPV6: FamilyAddresses = {
  family: 'IPv6',
  pod: 'fd00:10:244:1::2',
  peer: 'fd00:10:244:1::3',
  peerOther: 'fd00:10:244:2::3',
  otherCidr: 'fd00:10:244:2::/64',
  loopback: '::1',
};

/** The JSON line a listener answers with. */
export interface Answer {
  readonly name?: string;
  readonly listener?: number;
  readonly local?: { address: string; port: number };
  readonly original?: { address: string; port: number; family: string } | null;
  /** Why SO_ORIGINAL_DST gave nothing (the connection was not redirected). */
  readonly originalError?: string;
  /** Set by connect.ts when the connection itself failed. */
  readonly error?: string;
}

export class TestPods {
  private readonly processes: ChildProcess[] = [];

  private constructor(
    readonly pod: string,
    readonly peer: string,
  ) {}

  /** Creates the two namespaces and the link; removes what it made if any step fails. */
  static async create(options: { ipv6?: boolean } = {}): Promise<TestPods> {
    const id = randomBytes(3).toString('hex');
    const pods = new TestPods(`tsmesh-t-${id}-pod`, `tsmesh-t-${id}-peer`);
    const podIf = `tsp${id}`;
    const peerIf = `tsq${id}`;
    const ipv6 = options.ipv6 ?? true;
    try {
      await must('ip', ['netns', 'add', pods.pod]);
      await must('ip', ['netns', 'add', pods.peer]);
      await must('ip', ['-n', pods.pod, 'link', 'add', podIf, 'type', 'veth', 'peer', 'name', peerIf, 'netns', pods.peer]);
      const ends = [
        { ns: pods.pod, dev: podIf, v4: ['10.244.1.2/24'], v6: ['fd00:10:244:1::2/64'] },
        { ns: pods.peer, dev: peerIf, v4: ['10.244.1.3/24', '10.244.2.3/24'], v6: ['fd00:10:244:1::3/64', 'fd00:10:244:2::3/64'] },
      ];
      for (const { ns, dev, v4, v6 } of ends) {
        // IPv6 on (for ::1 and the dual-stack listeners) even when no global IPv6 address is given.
        const sysctl = ['all', 'default'].map((c) => `echo 0 > /proc/sys/net/ipv6/conf/${c}/disable_ipv6`).join('; ');
        await must('ip', ['netns', 'exec', ns, 'sh', '-c', sysctl]);
        await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
        for (const addr of v4) await must('ip', ['-n', ns, 'addr', 'add', addr, 'dev', dev]);
        // nodad: usable at once, no duplicate address detection wait.
        if (ipv6) for (const addr of v6) await must('ip', ['-n', ns, 'addr', 'add', addr, 'dev', dev, 'nodad']);
      }
      await must('ip', ['-n', pods.pod, 'route', 'add', '10.244.2.0/24', 'dev', podIf]);
      if (ipv6) await must('ip', ['-n', pods.pod, '-6', 'route', 'add', 'fd00:10:244:2::/64', 'dev', podIf]);
      return pods;
    } catch (e) {
      await pods.destroy();
      throw e;
    }
  }

  /** Runs a command in a namespace, optionally as another uid/gid (no capabilities then). */
  exec(ns: string, command: readonly string[], as: RunAs = {}, options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const [ip, ...args] = inNamespace(ns, command, as);
    return run(ip!, args, options);
  }

  /** `tsmesh init ARGS` inside the pod namespace, through the real CLI. */
  tsmeshInit(args: readonly string[], prefix: readonly string[] = []): Promise<RunResult> {
    return this.exec(this.pod, [...prefix, process.execPath, '--import', 'tsx', 'cli/main.ts', 'init', ...args], {}, { timeoutMs: 60_000 });
  }

  /** Starts a listener (test/netns/listener.ts) in a namespace and waits until it listens. */
  async listen(ns: string, name: string, ports: readonly number[]): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/netns/listener.ts', name, ports.join(',')], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.processes.push(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`listener ${name} in ${ns} did not start: ${err}`)), 20_000);
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`listener ${name} in ${ns} exited ${code}: ${err}`));
      });
    });
  }

  /** Connects from a namespace (as uid/gid) with test/netns/connect.ts and returns the listener's answer. */
  async connect(ns: string, host: string, port: number, as: RunAs = {}): Promise<Answer> {
    const r = await this.exec(ns, [process.execPath, '--import', 'tsx', 'test/netns/connect.ts', host, String(port)], as, { timeoutMs: 20_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Answer;
    } catch {
      return { error: `connect.ts printed ${JSON.stringify(r.stdout)} (stderr ${JSON.stringify(r.stderr.trim())})` };
    }
  }

  /** Stops every process this object started (by PID), then deletes both namespaces. */
  async destroy(): Promise<void> {
    for (const child of this.processes) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        continue;
      }
      await exited;
    }
    this.processes.length = 0;
    for (const ns of [this.pod, this.peer]) await run('ip', ['netns', 'del', ns]);
  }
}

/** iptables-save output without what changes by itself: timestamp comments and counters. */
export function normalizeSave(saved: string): string {
  return saved
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/\[\d+:\d+\]/g, '[0:0]'))
    .join('\n');
}
