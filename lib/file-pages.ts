// Gives back the pages of the node executable that the process no longer uses.
//
// The node binary (about 100 MB) is mapped from its file. The kernel maps it
// in 64 kB runs around every page the process touches (fault-around), and
// start-up touches much of it once: V8's deserializer and compilers, the
// bootstrap of node's own modules, OpenSSL's set-up. A proxy at 1,000 req/s
// had 40 MB of the binary in its RSS and, over 30 s, referenced 10 MB of it.
//
// ExecutablePages.release() advises the kernel (madvise MADV_DONTNEED) that the
// process no longer needs the clean, read-only mappings of its executable:
// their page-table entries go, the pages stay in the page cache (shared with
// every other process running the same binary), and the next access maps a
// page back with a minor fault. Only mappings with no private dirty and no
// anonymous pages are released: a page written after mapping (relocations in
// the RELRO segment) exists nowhere else, and dropping it would lose it.
//
// Linux only: anywhere else find() says why there is nothing to release.
//
// The same schedule gives back malloc's free memory (mallocTrim). V8's worker
// threads (the optimizing compiler, the concurrent GC) allocate their
// scratch memory with malloc, each thread in an arena of its own, and glibc
// keeps what they free: in a proxy at 1,000 req/s on Node 24, five or six
// thread arenas held 6.1-7.5 MB and the main heap 8.8-10.1 MB.
import { lastErrno, libcFunction } from './libc.js';
import type { Logger } from './log.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { readFileSync } = process.getBuiltinModule('node:fs');

const MADV_DONTNEED = 4;

export interface ReleaseResult {
  /** Mappings advised. */
  mappings: number;
  /** The process's VmRSS before and after, in bytes. */
  rssBefore: number;
  rssAfter: number;
  /** Why a mapping was not advised, when one was not. */
  skipped?: string;
}

/** One mapping of /proc/self/smaps: its range, permissions, path and counters (kB). */
export interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  rssKb: number;
  privateDirtyKb: number;
  anonymousKb: number;
}

/** Parses /proc/<pid>/smaps text into its mappings (maps text too: the counters stay 0). */
export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      cur = { start: BigInt(`0x${head[1]!}`), end: BigInt(`0x${head[2]!}`), perms: head[3]!, path: head[4]!, rssKb: 0, privateDirtyKb: 0, anonymousKb: 0 };
      out.push(cur);
      continue;
    }
    const field = /^(Rss|Private_Dirty|Anonymous):\s+(\d+) kB$/.exec(line);
    if (!cur || !field) continue;
    const kb = Number(field[2]);
    if (field[1] === 'Rss') cur.rssKb = kb;
    else if (field[1] === 'Private_Dirty') cur.privateDirtyKb = kb;
    else cur.anonymousKb = kb;
  }
  return out;
}

/** The mappings of `path` that can be dropped and mapped back from the file unchanged. */
export function releasableMappings(mappings: readonly Mapping[], path: string): Mapping[] {
  return mappings.filter((m) => m.path === path && !m.perms.includes('w') && m.perms.endsWith('p') && m.privateDirtyKb === 0 && m.anonymousKb === 0 && m.rssKb > 0);
}

type Madvise = (addr: bigint, length: bigint, advice: number) => number;
let madvise: Madvise | undefined;

/**
 * At most this much is advised at once, and the event loop runs between chunks:
 * a first release of 40 MB, one call per mapping, held the event loop 16 to
 * 25 ms; in 1 MB chunks the longest wait was 4 ms, in 256 kB chunks under 1 ms.
 */
const CHUNK_BYTES = 1n << 18n;

/**
 * The releasable mappings of the executable, found once (reading smaps walks
 * the page tables: milliseconds for a process with a large heap); every
 * release checks /proc/self/maps, which is cheap, that each is still there.
 */
export class ExecutablePages {
  private constructor(
    private readonly path: string,
    private readonly ranges: readonly Mapping[],
  ) {}

  /** The executable's releasable mappings, or why there are none to release. */
  static find(path: string = process.execPath): ExecutablePages | string {
    if (process.platform !== 'linux') return `not Linux (${process.platform})`;
    let ranges: Mapping[];
    try {
      ranges = releasableMappings(parseSmaps(readFileSync('/proc/self/smaps', 'utf8')), path);
    } catch (e) {
      return `cannot read /proc/self/smaps: ${(e as Error).message}`;
    }
    if (ranges.length === 0) return `no clean read-only mapping of ${path}`;
    try {
      // Addresses pass as integers: uintptr_t and a pointer travel in the same register.
      madvise ??= libcFunction('int madvise(uintptr_t addr, size_t length, int advice)') as Madvise;
    } catch (e) {
      return `cannot load madvise: ${(e as Error).message}`;
    }
    return new ExecutablePages(path, ranges);
  }

  /** Advises every mapping still in place, a chunk at a time; `between` runs between chunks (setImmediate by default). */
  async release(between: () => Promise<void> = () => new Promise((r) => setImmediate(r))): Promise<ReleaseResult> {
    const current = new Set(parseSmaps(readFileSync('/proc/self/maps', 'utf8')).filter((m) => m.path === this.path).map(key));
    const result: ReleaseResult = { mappings: 0, rssBefore: vmRss(), rssAfter: 0 };
    for (const m of this.ranges) {
      // Remapped since (say, onto anonymous huge pages): advising it now could zero live memory.
      if (!current.has(key(m))) continue;
      let advised = true;
      for (let at = m.start; at < m.end && advised; at += CHUNK_BYTES) {
        const len = m.end - at < CHUNK_BYTES ? m.end - at : CHUNK_BYTES;
        advised = madvise!(at, len, MADV_DONTNEED) === 0;
        if (advised) await between();
        else result.skipped = `madvise refused ${at.toString(16)}+${len.toString(16)} (errno ${lastErrno()})`;
      }
      if (advised) result.mappings++;
    }
    result.rssAfter = vmRss();
    return result;
  }
}

const key = (m: Mapping): string => `${m.start.toString(16)}-${m.end.toString(16)} ${m.perms}`;

function vmRss(): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
}

/**
 * glibc's malloc_trim(0), which gives the free pages of every malloc arena
 * back to the kernel; or why there is none (musl has no malloc_trim).
 */
export function mallocTrim(): (() => void) | string {
  try {
    const trim = libcFunction('int malloc_trim(size_t pad)') as (pad: number) => number;
    return () => void trim(0);
  } catch (e) {
    return `no malloc_trim in this C library: ${(e as Error).message}`;
  }
}

export interface ReleaseSchedule {
  /** After start-up: the first release. */
  firstMs: number;
  /** Then every so often, for pages that one-off work mapped since (a config push, a rotation, the optimizing compiler). */
  everyMs: number;
  log: Logger;
}

/**
 * Releases the executable's pages and malloc's free memory on a schedule;
 * returns what stops it. Timers are unref'd.
 */
export function scheduleMemoryRelease(o: ReleaseSchedule): () => void {
  const pages = ExecutablePages.find();
  if (typeof pages === 'string') o.log.info('executable pages stay mapped', { reason: pages });
  const trim = mallocTrim();
  if (typeof trim === 'string') o.log.info("malloc's free memory stays", { reason: trim });
  if (typeof pages === 'string' && typeof trim === 'string') return () => undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = async (): Promise<void> => {
    // Memory housekeeping: whatever goes wrong is logged, never thrown into the proxy.
    try {
      const t0 = performance.now();
      const r = typeof pages === 'string' ? undefined : await pages.release();
      const rssBefore = r?.rssBefore ?? vmRss();
      if (typeof trim !== 'string') trim();
      const mb = (n: number): number => Math.round(n / 104857.6) / 10;
      o.log.debug('released memory', { mappings: r?.mappings ?? 0, mallocTrimmed: typeof trim !== 'string', rssBeforeMb: mb(rssBefore), rssAfterMb: mb(vmRss()), ms: Math.round(performance.now() - t0) });
      if (r?.skipped) o.log.warn('executable pages not all released', { reason: r.skipped });
    } catch (e) {
      o.log.warn('memory not released', { reason: (e as Error).message });
    }
    if (!stopped) (timer = setTimeout(() => void run(), o.everyMs)).unref();
  };
  (timer = setTimeout(() => void run(), o.firstMs)).unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
