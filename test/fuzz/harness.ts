// Runs the differential fuzzer once: a network namespace of its own (its
// loopback only; nothing else is reached), HAProxy and nginx in it with the
// configs of references.ts, and worker.ts in it (the recording app and
// tsmesh's sidecars); hands back what each client saw and what the app
// recorded, for verdict.ts to judge. Every process is started here, tracked
// by PID and killed by it; the namespace and the temporary folder are
// removed whatever happens.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inNamespace, Managed, must, run } from '../../lib/netns.js';
import type { FuzzCase } from './corpus.js';
import { REFERENCES, referencesMissing } from './references.js';
import { TSMESH, TSMESH_INBOUND, type Job, type Lane, type WorkerResult } from './job.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The proxies compared, in the table's order. */
export const PROXIES = [TSMESH, TSMESH_INBOUND, ...REFERENCES.map((r) => r.name)] as const;
export type ProxyName = (typeof PROXIES)[number];

/** Ports inside the namespace (its own loopback, so fixed ones are free): lane k of proxy p. */
const proxyPort = (p: number, k: number): number => 18000 + 100 * p + k;
const appPort = (p: number, k: number): number => 19000 + 100 * p + k;

export interface HarnessOptions {
  readonly cases: readonly FuzzCase[];
  /** A case that has not ended by then is a wait (timeout). */
  readonly boundMs: number;
  /** Complete answers followed by this much silence end a case. */
  readonly quietMs: number;
  /** Lanes per proxy (job.ts): cases that run side by side. */
  readonly lanes: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

export interface HarnessRun extends WorkerResult {
  readonly cases: readonly FuzzCase[];
  readonly ms: number;
}

/** Why the fuzzer cannot run here (one line, saying what to install or how to run it), or undefined when it can. */
export async function fuzzUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the HTTP/1.1 differential fuzzer needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the HTTP/1.1 differential fuzzer needs root (it creates a network namespace)';
  const missing = referencesMissing();
  if (missing !== undefined) return `the HTTP/1.1 differential fuzzer compares tsmesh with HAProxy and nginx, and ${missing}`;
  for (const [tool, pkg] of [['ip', 'iproute2'], ['setpriv', 'util-linux']] as const) {
    if ((await run(tool, ['--version'])).code === 127) return `the HTTP/1.1 differential fuzzer needs ${tool}: apt-get install ${pkg}`;
  }
  return undefined;
}

export async function runHarness(opts: HarnessOptions): Promise<HarnessRun> {
  const log = opts.log ?? ((): void => undefined);
  const started = Date.now();
  const ns = `tsmesh-fz-${randomBytes(3).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-fuzz-'));
  const processes: Managed[] = [];
  const spawnIn = (name: string, command: readonly string[]): Managed => {
    const [ip, ...args] = inNamespace(ns, command);
    const child = spawn(ip!, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => undefined);
    const managed = new Managed(name, child);
    processes.push(managed);
    return managed;
  };
  try {
    await must('ip', ['netns', 'add', ns]);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const ks = Array.from({ length: Math.max(1, opts.lanes) }, (_, k) => k);
    const lanes: Lane[] = [TSMESH, TSMESH_INBOUND].flatMap((proxy, p) => ks.map((k) => ({ proxy, appPort: appPort(p, k) })));
    for (const [i, ref] of REFERENCES.entries()) {
      const refDir = join(dir, ref.name);
      await must('mkdir', ['-p', refDir]);
      const mine = ks.map((k) => ({ proxy: ref.name, port: proxyPort(i + 2, k), appPort: appPort(i + 2, k) }));
      const command = await ref.prepare(refDir, mine);
      spawnIn(ref.name, command).child.stdin!.end();
      lanes.push(...mine);
    }
    const job: Job = { cases: opts.cases, lanes, boundMs: opts.boundMs, quietMs: opts.quietMs };
    const worker = spawnIn('worker', [process.execPath, '--import', 'tsx', 'test/fuzz/worker.ts']);
    worker.child.stdin!.end(JSON.stringify(job));
    log(`${opts.cases.length} cases through ${PROXIES.join(', ')} (${ks.length} lanes each) in namespace ${ns}`);
    const limitMs = 60_000 + (opts.cases.length / ks.length) * (2 * opts.boundMs + 500);
    const line = await worker.line((l) => l.startsWith('RESULT '), limitMs).catch((e: Error) => {
      const others = processes.filter((p) => p !== worker).map((p) => p.tail(10));
      throw new Error(`${e.message}\n${others.join('\n')}`, { cause: e });
    });
    for (const p of processes) {
      if (p !== worker && !p.running) throw new Error(`${p.name} exited during the run:\n${p.tail()}`);
    }
    const result = JSON.parse(line.slice('RESULT '.length)) as WorkerResult;
    return { ...result, cases: opts.cases, ms: Date.now() - started };
  } finally {
    for (const p of processes) await p.stop(2000, 'SIGKILL');
    await run('ip', ['netns', 'del', ns]);
    await rm(dir, { recursive: true, force: true });
  }
}
