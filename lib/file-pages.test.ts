import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createLogger } from './log.js';
import { parseSmaps, releasableMappings, scheduleMemoryRelease } from './file-pages.js';

const SMAPS = `00400000-00772000 r--p 00000000 fe:00 247580                             /usr/bin/node
Size:               3528 kB
Rss:                2100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
00b72000-025fe000 r-xp 00772000 fe:00 247580                             /usr/bin/node
Size:              27184 kB
Rss:               20980 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
0563a000-0563e000 r--p 05239000 fe:00 247580                             /usr/bin/node
Size:                 16 kB
Rss:                  16 kB
Private_Dirty:        16 kB
Anonymous:            16 kB
0563e000-0565d000 rw-p 0523d000 fe:00 247580                             /usr/bin/node
Size:                124 kB
Rss:                 100 kB
Private_Dirty:        60 kB
Anonymous:            60 kB
05700000-05800000 r--p 00000000 fe:00 247580                             /usr/bin/node
Size:               1024 kB
Rss:                   0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1024 kB
Rss:                 900 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
Private_Dirty:      1024 kB
Anonymous:          1024 kB
`;

describe('executable pages', () => {
  it('parses smaps and picks only the clean, read-only, resident mappings of the executable', () => {
    const maps = parseSmaps(SMAPS);
    assert.equal(maps.length, 7);
    assert.deepEqual(maps[1], { start: 0xb72000n, end: 0x25fe000n, perms: 'r-xp', path: '/usr/bin/node', rssKb: 20980, privateDirtyKb: 0, anonymousKb: 0 });
    assert.equal(maps[6]!.path, '');
    // Not the RELRO page (written by the loader), not .data, not an empty mapping, not another file.
    assert.deepEqual(
      releasableMappings(maps, '/usr/bin/node').map((m) => m.start),
      [0x400000n, 0xb72000n],
    );
  });

  it('releases them in a running process, which goes on working and maps back only what it uses', function () {
    if (process.platform !== 'linux') this.skip();
    // A child of its own, so that this test runner's pages are left alone.
    const module = JSON.stringify(fileURLToPath(new URL('./file-pages.ts', import.meta.url)));
    const script = `
      import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
      import { readFileSync } from 'node:fs';
      import { ExecutablePages, parseSmaps } from ${module};
      const exeKb = () => parseSmaps(readFileSync('/proc/self/smaps', 'utf8')).filter((m) => m.path === process.execPath).reduce((a, m) => a + m.rssKb, 0);
      const work = () => {
        const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const sig = sign('sha256', Buffer.from('tsmesh'), privateKey);
        if (!verify('sha256', Buffer.from('tsmesh'), publicKey, sig)) throw new Error('signature does not verify');
        return createHash('sha256').update(JSON.stringify([...Array(1000).keys()])).digest('hex');
      };
      const first = work();
      const pages = ExecutablePages.find();
      if (typeof pages === 'string') throw new Error(pages);
      let chunks = 0;
      const before = exeKb();
      const r = await pages.release(async () => { chunks++; });
      const after = exeKb();
      const again = work();
      console.log(JSON.stringify({ before, after, afterWork: exeKb(), r, chunks, same: first === again }));
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const { before, after, afterWork, r, chunks, same } = JSON.parse(out) as {
      before: number;
      after: number;
      afterWork: number;
      r: { mappings: number; rssBefore: number; rssAfter: number; skipped?: string };
      chunks: number;
      same: boolean;
    };
    assert.equal(r.skipped, undefined);
    assert.ok(r.mappings >= 1, `released ${r.mappings} mappings`);
    assert.ok(before > 20_000, `the executable's resident pages before: ${before} kB`);
    // What stays is what ran between the release and the measurement (this script, parsing smaps).
    assert.ok(after < before / 2, `before ${before} kB, after ${after} kB`);
    assert.ok(r.rssAfter < r.rssBefore - 10 * 2 ** 20, `VmRSS ${r.rssBefore} -> ${r.rssAfter}`);
    // The binary is about 100 MB: advised 256 kB at a time, with a turn of the event loop between.
    assert.ok(chunks >= 200, `${chunks} chunks`);
    assert.ok(same, 'the same work gave a different answer after the release');
    assert.ok(afterWork < before, `after more work ${afterWork} kB, before the release ${before} kB`);
  });

  it("gives malloc's free memory back: buffers freed among live ones leave the process's RSS", function () {
    if (process.platform !== 'linux') this.skip();
    // A child of its own: the freed memory and the trim are its alone.
    const module = JSON.stringify(fileURLToPath(new URL('./file-pages.ts', import.meta.url)));
    const script = `
      import { readFileSync } from 'node:fs';
      import { mallocTrim } from ${module};
      const trim = mallocTrim();
      if (typeof trim === 'string') throw new Error(trim);
      const rssMb = () => Number(/^VmRSS:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      // 128 MB in 64 kB buffers, malloc'd (below its mmap threshold); every eighth stays alive, so the
      // free runs between them are not at the top of the heap, where free() alone would return them.
      let buffers = Array.from({ length: 2048 }, (_, i) => Buffer.allocUnsafeSlow(64 * 1024).fill(i));
      buffers = buffers.filter((_, i) => i % 8 === 0);
      globalThis.gc(); globalThis.gc();
      const before = rssMb();
      trim();
      const after = rssMb();
      const intact = buffers.every((b, i) => b[0] === (i * 8) % 256 && b[b.length - 1] === (i * 8) % 256);
      console.log(JSON.stringify({ before, after, intact }));
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const { before, after, intact } = JSON.parse(out) as { before: number; after: number; intact: boolean };
    // 112 MB were freed; what stays in the free runs is what malloc keeps per chunk.
    assert.ok(after < before - 80, `VmRSS ${before.toFixed(1)} MB before malloc_trim, ${after.toFixed(1)} MB after`);
    assert.ok(intact, 'a live buffer changed');
  });

  it('releases on its schedule until stopped, and logs each release', async function () {
    if (process.platform !== 'linux') this.skip();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('proxy', 'debug', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    const stop = scheduleMemoryRelease({ firstMs: 10, everyMs: 100, log });
    const released = (): Record<string, unknown>[] => lines.filter((l) => l['msg'] === 'released memory');
    const deadline = Date.now() + 10_000;
    while (released().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stop();
    const seen = released().length;
    assert.ok(seen >= 2, JSON.stringify(lines));
    assert.ok(released().every((l) => typeof l['mappings'] === 'number' && l['mappings'] > 0 && l['mallocTrimmed'] === true && (l['rssAfterMb'] as number) > 0), JSON.stringify(lines));
    assert.deepEqual(lines.filter((l) => l['level'] === 'warn'), []);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(released().length, seen, 'a release after stop()');
  });
});
