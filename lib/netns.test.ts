// Managed.line, which tests use to read what their processes print: a real
// child process writing one line in two pieces.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asUser, checkReach, Managed, reachPlan, run } from './netns.js';

describe('Managed.line', () => {
  it('waits for a line\'s newline: a long line written in pieces is returned whole', async () => {
    // The first piece alone would pass the test; the line is only whole 300 ms later.
    const script = 'process.stdout.write(\'{"sent":\'); setTimeout(() => process.stdout.write(\'1}\\n\'), 300); setTimeout(() => undefined, 600);';
    const p = new Managed('piecewise', spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      const line = await p.line((l) => l.startsWith('{"sent":'), 5000);
      assert.deepEqual(JSON.parse(line), { sent: 1 });
    } finally {
      await p.stop();
    }
  });

  it('takes the last line without a newline once the process has ended its output', async () => {
    const p = new Managed('no-newline', spawn(process.execPath, ['-e', 'process.stdout.write("done")'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      assert.equal(await p.line((l) => l === 'done', 5000), 'done');
    } finally {
      await p.stop();
    }
  });

  it('gives up at once when the process ended without the line', async () => {
    const p = new Managed('silent', spawn(process.execPath, ['-e', 'console.log("other")'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const t0 = Date.now();
    await assert.rejects(p.line((l) => l === 'wanted', 10_000), /silent exited \(0\)/);
    assert.ok(Date.now() - t0 < 5000, 'it did not wait for the timeout');
  });
});

// asUser: a program run as another uid reaches a folder below a directory
// that uid cannot enter (a repository in root's 0700 home), through a mount
// namespace of its own, at the same paths; the host keeps its mounts.
describe('asUser', () => {
  const APP = { uid: 1000, gid: 1000 };
  let dir: string | undefined;
  let tree: string;

  before(async function () {
    if (process.platform !== 'linux' || process.getuid?.() !== 0 || (await run('unshare', ['--version'])).code !== 0) this.skip();
  });

  beforeEach(() => {
    // Two closed levels (0700) above the folder, a space and a quote in its path.
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-closed-'));
    chmodSync(dir, 0o700);
    mkdirSync(join(dir, 'inner', "it's here", 'repo'), { recursive: true, mode: 0o755 });
    chmodSync(join(dir, 'inner'), 0o700);
    tree = join(dir, 'inner', "it's here", 'repo');
    writeFileSync(join(tree, 'hello.txt'), 'hello\n', { mode: 0o644 });
  });

  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('runs node as uid 1000 from below two 0700 directories, at the same paths, its PID its own; the host sees no mount and no change', async () => {
    // Without it, uid 1000 cannot reach the folder at all.
    const plain = await run('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'cat', join(tree, 'hello.txt')]);
    assert.notEqual(plain.code, 0, 'the folder was reachable without help: the test proves nothing');
    assert.deepEqual(reachPlan([tree], 1000, 1000), { cover: [dir], bind: [tree] });

    const script =
      'const fs = require("fs");' +
      'console.log(JSON.stringify({ pid: process.pid, uid: process.getuid(), cwd: process.cwd(), hello: fs.readFileSync("hello.txt", "utf8"), ' +
      'mounted: fs.readFileSync("/proc/self/mountinfo", "utf8").includes(" tsmesh-reach ") }));' +
      'process.stdin.resume(); process.stdin.on("end", () => process.exit(0));';
    const mountsBefore = readFileSync('/proc/self/mountinfo', 'utf8');
    const [command, ...args] = asUser(APP, [process.execPath, '-e', script], { pdeathsig: true, reach: [tree] });
    assert.equal(command, 'unshare');
    const p = new Managed('reach', spawn(command!, args, { cwd: tree, stdio: ['pipe', 'pipe', 'pipe'] }));
    try {
      const seen = JSON.parse(await p.line((l) => l.startsWith('{'), 10_000)) as Record<string, unknown>;
      assert.deepEqual(seen, { pid: p.child.pid, uid: 1000, cwd: tree, hello: 'hello\n', mounted: true });
      // While it runs: its mounts are its own.
      assert.equal(readFileSync('/proc/self/mountinfo', 'utf8'), mountsBefore);
      p.child.stdin!.end();
      assert.equal((await p.exited).code, 0, p.tail());
    } finally {
      await p.stop();
    }
    assert.equal(statSync(dir!).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir!, 'inner')).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir!), ['inner']);
  });

  it('is plain setpriv when nothing is closed, and the command itself for no user', () => {
    assert.deepEqual(asUser(APP, ['true'], { reach: ['/usr/bin'] }), ['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', 'true']);
    assert.deepEqual(asUser({}, ['true']), ['true']);
    assert.deepEqual(asUser({}, ['true'], { pdeathsig: true }), ['setpriv', '--pdeathsig', 'KILL', 'true']);
  });

  it('says in one line what another user cannot read, and what to do, when a mount cannot help', async () => {
    assert.equal(await checkReach('the demo', APP, tree, ['hello.txt']), undefined);
    writeFileSync(join(tree, 'secret.txt'), 'no\n', { mode: 0o600 });
    const file = await checkReach('the demo', APP, tree, ['hello.txt', 'secret.txt']);
    assert.equal(
      file,
      `the demo: its apps and proxies run as other users, and uid 1000 cannot read ${join(tree, 'secret.txt')} (mode 0600); make the tree readable to others (chmod -R o+rX ${tree}) or clone the repository with umask 022`,
    );
    chmodSync(tree, 0o700);
    const folder = await checkReach('the demo', APP, tree, ['hello.txt']);
    assert.match(folder!, new RegExp(`^the demo: .* cannot enter ${tree.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(mode 0700\\); make the tree readable`));
    assert.ok(!folder!.includes('\n'));
  });
});
