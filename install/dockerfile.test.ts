// The Dockerfile cannot be built on a machine without a Docker engine, so
// what the image relies on is checked here: the rules of the Dockerfile
// (Node LTS slim stages, production dependencies only, iptables, a non-root
// default user, `tsmesh` as entrypoint), a build context that holds every
// compiled folder, install scripts that may be skipped, and the image's
// layout rebuilt in a temporary folder (compiled dist/, package.json,
// manifests/, the `tsmesh` symlink) running `tsmesh install --dry-run`.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

/** Instructions with their continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\w+)\s+(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}

const ins = instructions(dockerfile);
const stages: { from: string; body: { op: string; args: string }[] }[] = [];
for (const i of ins) {
  if (i.op === 'FROM') stages.push({ from: i.args, body: [] });
  else stages.at(-1)?.body.push(i);
}
const final = stages.at(-1)!;
const run = (s: { body: { op: string; args: string }[] }): string => s.body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');

describe('Dockerfile', function () {
  it('builds in stages on a Node 22 or 24 LTS slim image', function () {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    assert.match(arg ?? '', /^node:(22|24)(\.\d+)*-(bookworm|trixie)-slim(@sha256:[0-9a-f]{64})?$/);
    assert.ok(stages.length >= 3, 'build, production dependencies, runtime');
    for (const s of stages) assert.match(s.from, /^\$\{NODE_IMAGE\}( AS \w+)?$/);
  });

  it('ships production dependencies only, from their own stage, without install scripts', function () {
    const deps = stages.find((s) => / AS deps$/.test(s.from))!;
    assert.match(run(deps), /npm ci --omit=dev --ignore-scripts/);
    assert.ok(final.body.some((i) => i.op === 'COPY' && i.args === '--from=deps /src/node_modules ./node_modules'));
    assert.ok(!final.body.some((i) => i.op === 'COPY' && /--from=build \S*node_modules/.test(i.args)), 'no dev dependencies from the build stage');
  });

  it('skipping install scripts is safe: each package that has one is known not to need it', function () {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean; dev?: boolean }> };
    // koffi: its script only looks for a prebuilt binary, which it loads at run time from @koromix/koffi-<platform>.
    const known = new Set(['node_modules/koffi']);
    const prod = Object.entries(lock.packages).filter(([name, p]) => name !== '' && p.hasInstallScript && !p.dev);
    assert.deepEqual(prod.map(([name]) => name).filter((n) => !known.has(n)), [], 'a production dependency runs an install script; check that the image works without it');
  });

  it('installs iptables for the init container, and cleans the apt lists', function () {
    assert.match(run(final), /apt-get install -y --no-install-recommends iptables/);
    assert.match(run(final), /rm -rf \/var\/lib\/apt\/lists\/\*/);
  });

  it('runs as a non-root user by default, with tsmesh as the entrypoint', function () {
    const user = final.body.filter((i) => i.op === 'USER').at(-1)?.args;
    assert.match(user ?? '', /^[1-9]\d*:[1-9]\d*$/, 'a numeric uid:gid, so runAsNonRoot can verify it');
    assert.deepEqual(JSON.parse(final.body.find((i) => i.op === 'ENTRYPOINT')!.args), ['tsmesh']);
    const bin = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['tsmesh'];
    assert.match(run(final), new RegExp(`ln -s /opt/tsmesh/${bin!.replace(/\./g, '\\.')} /usr/local/bin/tsmesh`));
    assert.match(run(final), new RegExp(`chmod 0755 ${bin!.replace(/\./g, '\\.')}`));
  });

  it('the build context holds every compiled folder and the build inputs (.dockerignore)', function () {
    const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    const excluded = (path: string): boolean => ignore.some((p) => p === path || p === `${path.split('/')[0]}` || (p.startsWith('**/') && path.endsWith(p.slice(3))));
    for (const f of [...build.include, 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'manifests']) assert.ok(!excluded(f), `.dockerignore leaves out ${f}`);
    for (const f of ['node_modules', 'dist', '.git']) assert.ok(ignore.includes(f), `.dockerignore should leave out ${f}`);
  });

  describe('the image\'s layout, rebuilt in a folder', function () {
    this.timeout(120_000);
    let dir: string;
    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'tsmesh-image-'));
      const opt = join(dir, 'opt', 'tsmesh');
      mkdirSync(opt, { recursive: true });
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(opt, 'dist')], { stdio: 'inherit' });
      cpSync(join(ROOT, 'package.json'), join(opt, 'package.json'));
      cpSync(join(ROOT, 'manifests'), join(opt, 'manifests'), { recursive: true });
      // Production dependencies only, as `npm ci --omit=dev` leaves them: every package the lock does not mark dev.
      const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
      for (const [path, p] of Object.entries(lock.packages)) {
        if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) || p.dev || !existsSync(join(ROOT, path))) continue;
        mkdirSync(dirname(join(opt, path)), { recursive: true });
        symlinkSync(join(ROOT, path), join(opt, path));
      }
      chmodSync(join(opt, 'dist', 'cli', 'main.js'), 0o755);
      mkdirSync(join(dir, 'bin'));
      symlinkSync(join(opt, 'dist', 'cli', 'main.js'), join(dir, 'bin', 'tsmesh'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('`tsmesh` runs through the symlink, knows its version and finds manifests/', function () {
      const env = { ...process.env, PATH: `${join(dir, 'bin')}:${process.env['PATH'] ?? ''}` };
      const help = spawnSync('tsmesh', ['--help'], { env, encoding: 'utf8' });
      assert.equal(help.status, 0, help.stderr);
      const out = spawnSync('tsmesh', ['install', '--dry-run'], { env, encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
      assert.match(out.stdout, new RegExp(`^# tsmesh ${version.replace(/\./g, '\\.')}, rendered by`));
      assert.match(out.stdout, new RegExp(`image: ghcr\\.io/tsmesh/tsmesh:${version.replace(/\./g, '\\.')}`));
      assert.match(out.stdout, /# Source: manifests\/webhook\.yaml/);
    });

    it('the init container\'s and the proxy\'s commands load with production dependencies only', function () {
      const env = { ...process.env, PATH: `${join(dir, 'bin')}:${process.env['PATH'] ?? ''}` };
      for (const args of [['init', '--dry-run'], ['proxy', '--help'], ['control-plane', '--help'], ['check', '--help']]) {
        const r = spawnSync('tsmesh', args, { env, encoding: 'utf8' });
        assert.equal(r.status, 0, `tsmesh ${args.join(' ')}: ${r.stderr}`);
      }
    });
  });
});
