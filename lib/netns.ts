// Running programs for real in network namespaces: commands to completion,
// long-running processes tracked by PID with their output kept, and the
// `ip netns exec` (+ `setpriv`) wrapping that puts a program in a namespace
// as another user. Shared by `tsmesh demo` (root mode), the netns tests and
// the sidecar benchmark. Nothing here kills by name: only by a PID it holds.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
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
  readonly uid?: number | undefined;
  readonly gid?: number | undefined;
}

/**
 * The argv that runs `command` in namespace `ns` (as `as`), through setpriv.
 * `ip netns exec` and setpriv each exec the next: the PID is the program's
 * own, and its parent is whoever spawned the argv. setpriv also gives it a
 * parent-death signal (set after the uid change, which would clear it), so a
 * parent killed without a chance to stop its children (SIGKILL) leaves no
 * process behind in the namespace. Every program the demo, the netns tests
 * and the soak start in a namespace goes through here; see asUser for how
 * one run as another user reaches a repository below a closed directory.
 */
export function inNamespace(ns: string, command: readonly string[], as: RunAs = {}): string[] {
  return ['ip', 'netns', 'exec', ns, ...asUser(as, command, { pdeathsig: true })];
}

/** The folder of this package (package.json), from this file up: dist/lib/ as well as lib/. */
export const PACKAGE_ROOT = ((): string => {
  for (let d = dirname(realpathSync(fileURLToPath(import.meta.url))); ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d;
    if (dirname(d) === d) return dirname(fileURLToPath(import.meta.url));
  }
})();

/** What a program run as another user must reach: this package (its code and node_modules) and node itself. */
const defaultReach = (): string[] => [PACKAGE_ROOT, dirname(realpathSync(process.execPath))];

export interface AsUserOptions {
  /** setpriv --pdeathsig KILL: the program dies with whoever spawned it. */
  pdeathsig?: boolean;
  /** Folders the program must reach (default: this package and node's folder). */
  reach?: readonly string[];
}

/**
 * The argv that runs `command` as `as` (setpriv: that uid and gid, no
 * supplementary groups, no capabilities), or as it is when `as` names no one.
 *
 * A folder to reach may sit below a directory that user cannot enter (the
 * repository cloned into root's 0700 home, node installed there by nvm).
 * Then the program starts in a mount namespace of its own (`unshare --mount
 * --propagation private`, nothing it mounts is seen outside it, and it goes
 * away with its last process): a tmpfs (mode 0755) covers the topmost closed
 * directory, the folder is bind-mounted back at the same path inside it, and
 * setpriv runs from there. Paths do not change (the command's, its working
 * directory's, import.meta.url's), nothing is created or left on the host,
 * and no directory's mode is touched. What the tmpfs hides, that user could
 * not reach anyway. sh and unshare exec what follows, as setpriv does: the PID
 * is still the program's own.
 */
export function asUser(as: RunAs, command: readonly string[], options: AsUserOptions = {}): string[] {
  const pdeathsig = options.pdeathsig ? ['--pdeathsig', 'KILL'] : [];
  if (as.uid === undefined && as.gid === undefined) return pdeathsig.length > 0 ? ['setpriv', ...pdeathsig, ...command] : [...command];
  const uid = as.uid ?? 0;
  const gid = as.gid ?? as.uid ?? 0;
  const setpriv = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', ...pdeathsig, ...command];
  const plan = reachPlan(options.reach ?? defaultReach(), uid, gid);
  if (!plan) return setpriv;
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', reachScript(plan), 'tsmesh-reach', ...setpriv];
}

/** The mounts that give a user the folders it cannot reach: tmpfs over each topmost closed directory, then each folder bound back. */
export interface ReachPlan {
  readonly cover: readonly string[];
  readonly bind: readonly string[];
}

/** Can this uid/gid (no other groups) enter the directory? The owner's, the group's or the others' x bit, as the kernel picks it. */
function canEnter(path: string, uid: number, gid: number): boolean {
  if (uid === 0) return true;
  const st = statSync(path);
  const bit = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
  return (st.mode & bit) !== 0;
}

/** undefined when the user reaches every folder already. A folder that is itself closed cannot be helped: checkReach says so. */
export function reachPlan(folders: readonly string[], uid: number, gid: number): ReachPlan | undefined {
  const cover = new Set<string>();
  const bind = new Set<string>();
  for (const folder of folders.map((f) => realpathSync(f))) {
    const ancestors: string[] = [];
    for (let d = dirname(folder); ; d = dirname(d)) {
      ancestors.unshift(d);
      if (dirname(d) === d) break;
    }
    const closed = ancestors.find((d) => !canEnter(d, uid, gid));
    if (closed === undefined) continue;
    cover.add(closed);
    bind.add(folder);
  }
  if (bind.size === 0) return undefined;
  // A folder inside another comes with it; a closed directory inside another is covered by it.
  const inside = (a: string, b: string): boolean => a.startsWith(b === '/' ? b : `${b}/`);
  const outermost = (set: Set<string>): string[] => [...set].filter((a) => ![...set].some((b) => inside(a, b))).sort();
  return { cover: outermost(cover), bind: outermost(bind) };
}

const shQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The sh script of asUser's mount namespace. Each folder is opened (fd 3, 4,
 * ...) before the tmpfs hides it and bound back from /proc/self/fd, which the
 * kernel follows to the open directory itself (--no-canonicalize: mount(8)
 * must not turn it back into the hidden path). Then the working directory is
 * taken again by its path, so that it is the bound folder (when it is in
 * one), and "$@" (setpriv ...) is exec'd.
 */
function reachScript(plan: ReachPlan): string {
  const fds = plan.bind.map((_, i) => i + 3);
  return [
    'set -e',
    'here=$(pwd -P)',
    `exec ${plan.bind.map((f, i) => `${fds[i]}<${shQuote(f)}`).join(' ')}`,
    ...plan.cover.map((d) => `mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev tsmesh-reach ${shQuote(d)}`),
    'umask 022',
    ...plan.bind.map((f, i) => `mkdir -p ${shQuote(f)} && mount --no-canonicalize --bind /proc/self/fd/${fds[i]} ${shQuote(f)}`),
    `exec ${fds.map((fd) => `${fd}<&-`).join(' ')}`,
    'cd "$here" 2>/dev/null || :',
    'exec "$@"',
  ].join('\n');
}

/**
 * Why programs run as `as` cannot use this package (or undefined when they
 * can): runs a check through asUser, so through the mount namespace when one
 * is needed, reading `files` (paths in `root`) and running node. One line,
 * naming what failed and what to do.
 */
export async function checkReach(what: string, as: RunAs, root = PACKAGE_ROOT, files: readonly string[] = ['package.json'], nodePath = process.execPath): Promise<string | undefined> {
  // Folders and node must be enterable or runnable (x), files readable.
  const script = 'for f in "$@"; do if [ "$f" = "$0" ] || [ -d "$f" ]; then [ -x "$f" ]; else [ -r "$f" ]; fi || { echo "unreadable:$f"; exit 3; }; done';
  const paths = [nodePath, root, ...files.map((f) => join(root, f))];
  const reach = [root, dirname(realpathSync(nodePath))];
  const argv = asUser(as, ['sh', '-c', script, nodePath, ...paths], { reach });
  const r = await run(argv[0]!, argv.slice(1), { cwd: root, timeoutMs: 10_000 });
  if (r.code === 0) return undefined;
  const who = `uid ${as.uid ?? 0}${as.uid === 65534 ? ' (nobody)' : ''}`;
  const unreadable = /^unreadable:(.*)$/m.exec(r.stdout)?.[1];
  if (unreadable !== undefined) {
    const { path, verb, mode } = blocker(unreadable, reach, as.uid ?? 0, as.gid ?? as.uid ?? 0, unreadable === nodePath);
    const inTree = path === root || path.startsWith(`${root}/`);
    const fix = inTree
      ? `make the tree readable to others (chmod -R o+rX ${root}) or clone the repository with umask 022`
      : path === nodePath || path.startsWith(`${dirname(nodePath)}/`)
        ? `install node where other users can run it`
        : `clone the repository where other users can read it (e.g. under /srv or /tmp)`;
    return `${what}: its apps and proxies run as other users, and ${who} cannot ${verb} ${path}${mode}; ${fix}`;
  }
  const why = (r.stderr || r.stdout).trim().split('\n').filter(Boolean).pop() ?? `exit ${r.code}`;
  return `${what}: cannot show ${root} to other users (${who}) in a mount namespace: ${why}; clone the repository where other users can read it (e.g. under /srv or /tmp)`;
}

/**
 * What stops this uid/gid from reaching `path`: the first directory on the
 * way it cannot enter, else the path itself. The way starts at the `reach`
 * folder holding it (asUser opens what lies above one), else at /.
 */
function blocker(path: string, reach: readonly string[], uid: number, gid: number, runs: boolean): { path: string; verb: string; mode: string } {
  const modeOf = (p: string): string => {
    try {
      return ` (mode ${(statSync(p).mode & 0o777).toString(8).padStart(4, '0')})`;
    } catch {
      return '';
    }
  };
  const from = reach.find((f) => path === f || path.startsWith(`${f}/`));
  const ancestors: string[] = [];
  for (let d = path === from ? path : dirname(path); ; d = dirname(d)) {
    ancestors.unshift(d);
    if (d === from || dirname(d) === d) break;
  }
  for (const d of ancestors) {
    try {
      if (!canEnter(d, uid, gid)) return { path: d, verb: 'enter', mode: modeOf(d) };
    } catch {
      break;
    }
  }
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    // Gone, or not ours to see.
  }
  return { path, verb: isDir ? 'enter' : runs ? 'run' : 'read', mode: modeOf(path) };
}

/**
 * Why network namespaces cannot be used here (not Linux, not root, a tool
 * missing, namespaces refused, this package out of other users' reach), or
 * undefined when they can. `tools` are [program, its Debian package].
 */
export async function netnsUnavailable(what: string, tools: readonly (readonly [string, string])[]): Promise<string | undefined> {
  if (process.platform !== 'linux') return `${what} needs Linux network namespaces`;
  if (process.getuid?.() !== 0) return `${what} needs root (network namespaces, iptables)`;
  // Apps and proxies run as other users; "nobody" has no rights of its own: what it reaches, any other user does.
  const nobody: RunAs = { uid: 65534, gid: 65534 };
  const needed: (readonly [string, string])[] = [...tools];
  if (reachPlan(defaultReach(), nobody.uid!, nobody.gid!)) needed.push(['unshare', 'util-linux'], ['mount', 'mount']);
  const missing = [];
  for (const [tool, pkg] of needed) if ((await run(tool, ['--version'])).code === 127) missing.push(pkg);
  if (missing.length > 0) return `${what} needs tools that are missing: apt-get install ${[...new Set(missing)].join(' ')}`;
  const probe = `tsmesh-probe-${randomBytes(4).toString('hex')}`;
  const r = await run('ip', ['netns', 'add', probe]);
  if (r.code !== 0) return `this machine cannot create network namespaces: ${r.stderr.trim()}`;
  await run('ip', ['netns', 'del', probe]);
  return checkReach(what, nobody, PACKAGE_ROOT, ['package.json', relative(PACKAGE_ROOT, realpathSync(fileURLToPath(import.meta.url))).split(sep).join('/')]);
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
