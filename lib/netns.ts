// Running programs for real in network namespaces: commands to completion,
// long-running processes tracked by PID with their output kept, and the
// `ip netns exec` (+ `setpriv`) wrapping that puts a program in a namespace
// as another user. Shared by `tsmesh demo` (root mode), the netns tests and
// the sidecar benchmark. Nothing here kills by name: only by a PID it holds.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  input?: string;
  /** Killed by PID after this long (default 30 s). */
  timeoutMs?: number;
  cwd?: string;
}

/** Runs a command to completion (killed by PID after timeoutMs); a missing program is code 127. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
      stderr += `\n${command}: killed after ${timeoutMs} ms`;
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: e.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a command to completion; a non-zero exit throws with its stderr. */
export async function must(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const r = await run(command, args, options);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** A uid/gid to run as, without capabilities. */
export interface RunAs {
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * The argv that runs `command` in namespace `ns` (as `as`), through setpriv.
 * `ip netns exec` and setpriv each exec the next: the PID is the program's
 * own, and its parent is whoever spawned the argv. setpriv also gives it a
 * parent-death signal (set after the uid change, which would clear it), so a
 * parent killed without a chance to stop its children (SIGKILL) leaves no
 * process behind in the namespace.
 */
export function inNamespace(ns: string, command: readonly string[], as: RunAs = {}): string[] {
  const drop = as.uid === undefined && as.gid === undefined ? [] : [`--reuid=${as.uid ?? 0}`, `--regid=${as.gid ?? as.uid ?? 0}`, '--clear-groups'];
  return ['ip', 'netns', 'exec', ns, 'setpriv', ...drop, '--pdeathsig', 'KILL', ...command];
}

/**
 * Why network namespaces cannot be used here (not Linux, not root, a tool
 * missing, namespaces refused), or undefined when they can. `tools` are
 * [program, its Debian package].
 */
export async function netnsUnavailable(what: string, tools: readonly (readonly [string, string])[]): Promise<string | undefined> {
  if (process.platform !== 'linux') return `${what} needs Linux network namespaces`;
  if (process.getuid?.() !== 0) return `${what} needs root (network namespaces, iptables)`;
  const closed = closedAncestor(fileURLToPath(new URL('..', import.meta.url)));
  if (closed) {
    return (
      `${what}: its apps and proxies run as uids 1000 and 1337, which cannot enter ${closed.dir} (mode ${closed.mode}); ` +
      `clone the repository where other users can read it (e.g. under /srv or /tmp), or chmod o+x ${closed.dir}`
    );
  }
  const missing = [];
  for (const [tool, pkg] of tools) if ((await run(tool, ['--version'])).code === 127) missing.push(pkg);
  if (missing.length > 0) return `${what} needs tools that are missing: apt-get install ${[...new Set(missing)].join(' ')}`;
  const probe = `tsmesh-probe-${randomBytes(4).toString('hex')}`;
  const r = await run('ip', ['netns', 'add', probe]);
  if (r.code !== 0) return `this machine cannot create network namespaces: ${r.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe]);
  return undefined;
}

/**
 * The nearest directory, from `dir` up to /, that users other than its owner
 * cannot enter (no o+x, as root's 0700 home): programs run there as another
 * uid cannot reach the repository.
 */
function closedAncestor(dir: string): { dir: string; mode: string } | undefined {
  for (let d = dir; ; d = dirname(d)) {
    const mode = statSync(d).mode & 0o777;
    if ((mode & 0o001) === 0) return { dir: d, mode: mode.toString(8).padStart(4, '0') };
    if (dirname(d) === d) return undefined;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Thrown by a waitFor check: stop waiting now. */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/** Polls `check` until it returns a value (not undefined) or the time runs out. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof GiveUp) throw new Error(`gave up waiting for ${what}: ${e.message}`, { cause: e });
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** A process someone started, its output kept for its owner and for failure reports. */
export class Managed {
  stdout = '';
  stderr = '';
  /** Its stdout has ended: the text after the last newline is a whole line, not one still being written. */
  private stdoutEnded = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /** `keepChars`: keep only about the last this many characters of each stream (a long-running process); default all. */
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    keepChars = Infinity,
  ) {
    const keep = (s: string): string => (s.length > keepChars ? s.slice(s.length - Math.floor(keepChars / 2)) : s);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (this.stdout = keep(this.stdout + s)));
    child.stdout?.once('end', () => (this.stdoutEnded = true));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (this.stderr = keep(this.stderr + s)));
    child.on('error', (e) => (this.stderr += `\n${e.message}`));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /** Sends a signal to this process, by its PID. */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.child.pid!, sig);
    } catch {
      // Gone between the check and the signal.
    }
  }

  /** Ends the process: `sig` (SIGTERM by default), then SIGKILL after graceMs. */
  async stop(graceMs = 3000, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.signal(sig);
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Resolves with the first whole stdout line (its newline arrived, or stdout ended) for which `test` holds. */
  async line(test: (line: string) => boolean, timeoutMs: number): Promise<string> {
    return waitFor(
      `a line from ${this.name}`,
      async () => {
        const lines = this.stdout.split('\n');
        // A long line comes in several pieces: the one still being written is not tested yet.
        if (!this.stdoutEnded) lines.pop();
        const found = lines.find(test);
        if (found !== undefined) return found;
        if (!this.running && (this.stdoutEnded || !this.child.stdout)) throw new GiveUp(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.tail()}`);
        return undefined;
      },
      timeoutMs,
      50,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${this.tail()}`, { cause: e });
    });
  }

  tail(lines = 30): string {
    const cut = (s: string): string => s.trimEnd().split('\n').slice(-lines).join('\n');
    return `--- ${this.name} stdout\n${cut(this.stdout)}\n--- ${this.name} stderr\n${cut(this.stderr)}`;
  }
}
