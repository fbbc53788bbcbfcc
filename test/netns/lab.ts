// What the netns labs share (mesh-lab.ts: two pods and a plain client;
// stream-lab.ts: pods from a spec on one bridge): a namespace per node, a
// working folder, the processes started in them, and the removal of all
// three by destroy(), which every test calls even when it fails.
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { GiveUp, inNamespace, Managed, waitFor } from '../../lib/netns.js';
import { PROXY_DEFAULTS, PROXY_NODE_OPTIONS } from '../../contract/env.js';
import { REPO, run, type RunAs, type RunResult } from './netns.js';

/** How a lab runs `tsmesh proxy` in a pod. */
export interface ProxyStart {
  controlPlaneAddress: string;
  podIp: string;
  podNamespace: string;
  serviceAccount: string;
  trustDomain: string;
  tokenPath: string;
  trustBundlePath: string;
  drainDuration: string;
  /** Extra arguments, e.g. --config-file. */
  args: readonly string[];
  user: RunAs;
  /** More TSMESH_* variables, as the injector would set them (TSMESH_APP_PROBES). */
  env?: Readonly<Record<string, string>>;
}

export abstract class NamespaceLab<N extends string> {
  protected readonly processes: Managed[] = [];

  protected constructor(
    readonly id: string,
    readonly dir: string,
    /** The network namespace of each node. */
    readonly ns: Readonly<Record<N, string>>,
  ) {}

  private nsOf(node: N): string {
    const ns = this.ns[node];
    if (!ns) throw new Error(`no node ${node} in this lab`);
    return ns;
  }

  /** Starts a process in a namespace (as uid/gid when given), tracked for destroy(). */
  spawnIn(name: string, node: N, command: readonly string[], as: RunAs = {}, env: Record<string, string> = {}): Managed {
    // Not TSMESH_* from outside; nor a coverage directory another uid cannot write to.
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('TSMESH_') && !(k === 'NODE_V8_COVERAGE' && as.uid !== undefined && as.uid !== 0)),
    );
    const [ip, ...args] = inNamespace(this.nsOf(node), command, as);
    const child = spawn(ip!, args, {
      cwd: REPO,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...base, HOME: this.dir, ...env },
    });
    child.stdin?.on('error', () => undefined);
    const managed = new Managed(name, child);
    this.processes.push(managed);
    return managed;
  }

  /** Runs a command to completion in a namespace. */
  exec(node: N, command: readonly string[], as: RunAs = {}, options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const [ip, ...args] = inNamespace(this.nsOf(node), command, as);
    return run(ip!, args, options);
  }

  protected async mustIn(node: N, command: readonly string[]): Promise<string> {
    const r = await this.exec(node, command);
    if (r.code !== 0) throw new Error(`${command.join(' ')} in ${node} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * curl inside a namespace; returns the status (0 when no HTTP answer came),
   * the body (with the head first when -i is given), the HTTP version and
   * curl's exit code and error.
   */
  async curl(node: N, args: readonly string[], as: RunAs = {}): Promise<{ status: number; body: string; httpVersion: string; code: number; error: string }> {
    const marker = '\n--tsmesh-curl--';
    const r = await this.exec(node, ['curl', '-sS', '--max-time', '10', '-w', `${marker}%{http_code} %{http_version}`, ...args], as, { timeoutMs: 20_000 });
    const at = r.stdout.lastIndexOf(marker);
    const [status = '0', httpVersion = ''] = at < 0 ? [] : r.stdout.slice(at + marker.length).trim().split(' ');
    return { status: Number(status), body: at < 0 ? r.stdout : r.stdout.slice(0, at), httpVersion, code: r.code, error: r.stderr.trim() };
  }

  /** Starts `tsmesh proxy` in a pod (tracked like any process); see waitProxyReady. */
  protected spawnProxy(pod: N, o: ProxyStart): Managed {
    const env: Record<string, string> = {
      TSMESH_CONTROL_PLANE_ADDRESS: o.controlPlaneAddress,
      TSMESH_TOKEN_PATH: o.tokenPath,
      TSMESH_TRUST_BUNDLE_PATH: o.trustBundlePath,
      TSMESH_POD_NAME: pod,
      TSMESH_POD_NAMESPACE: o.podNamespace,
      TSMESH_POD_IP: o.podIp,
      TSMESH_SERVICE_ACCOUNT: o.serviceAccount,
      TSMESH_TRUST_DOMAIN: o.trustDomain,
      TSMESH_DRAIN_DURATION: o.drainDuration,
      TSMESH_LOG_LEVEL: 'info',
      // As the injector runs it: the proxy's memory in these tests is what it is in a pod.
      NODE_OPTIONS: PROXY_NODE_OPTIONS,
      ...o.env,
    };
    return this.spawnIn(`proxy-${pod}`, pod, [process.execPath, '--import', 'tsx', 'cli/main.ts', 'proxy', ...o.args], o.user, env);
  }

  /** Waits until a pod's proxy answers /ready on its admin port (certificate and config held). */
  protected async waitProxyReady(pod: N, proxy: Managed): Promise<void> {
    await waitFor(
      `proxy ${pod} to be ready`,
      async () => {
        if (!proxy.running) throw new GiveUp(`proxy ${pod} exited`);
        const r = await this.curl(pod, [`http://127.0.0.1:${PROXY_DEFAULTS.ADMIN_PORT}/ready`]);
        return r.status === 200 ? true : undefined;
      },
      60_000,
      200,
    );
  }

  /** The last lines of every process's output. */
  logs(lines = 30): string {
    return this.processes.map((p) => p.tail(lines)).join('\n');
  }

  /** Kills every process still running (by PID), then deletes the namespaces and the directory. */
  async destroy(): Promise<void> {
    for (const p of this.processes) {
      if (!p.running) continue;
      p.signal('SIGKILL');
      await p.exited;
    }
    this.processes.length = 0;
    for (const n of Object.values<string>(this.ns)) await run('ip', ['netns', 'del', n]);
    await rm(this.dir, { recursive: true, force: true });
  }
}
