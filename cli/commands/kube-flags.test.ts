// The habits of the commands that talk to Kubernetes (check, install,
// uninstall), as kubectl users type them: --kubeconfig and --context pick the
// cluster, -o yaml|json where the output is structured, bad values refused
// with the usage (exit 2). No cluster needed: the kubeconfig's two contexts
// name API servers on loopback ports nothing listens on, and the commands say
// which one they tried.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');

function tsmesh(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, out, err) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

describe('tsmesh check, install, uninstall: --context, -o', function () {
  this.timeout(60_000);
  let dir: string;
  let kubeconfig: string;
  let servers: { a: string; b: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-cli-kube-'));
    servers = { a: `https://127.0.0.1:${await closedPort()}`, b: `https://127.0.0.1:${await closedPort()}` };
    kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'current-context: a',
        'clusters:',
        ...(['a', 'b'] as const).map((c) => `  - name: ${c}\n    cluster: { server: "${servers[c]}" }`),
        'contexts:',
        ...['a', 'b'].map((c) => `  - name: ${c}\n    context: { cluster: ${c}, user: u }`),
        'users:',
        '  - name: u',
        '    user: { token: not-a-token }',
      ].join('\n'),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('check: -o yaml, -o json and the text say the same, about the API server of --context', async () => {
    const yaml = await tsmesh('check', '--kubeconfig', kubeconfig, '--context', 'b', '-o', 'yaml');
    assert.equal(yaml.code, 1, yaml.err);
    const lines = parseYaml(yaml.out) as { section: string; status: string; message: string }[];
    assert.equal(lines[0]!.status, 'fail');
    assert.match(lines[0]!.message, new RegExp(`^cannot reach the API server ${servers.b}`));
    const json = await tsmesh('check', '--kubeconfig', kubeconfig, '--context', 'b', '--output', 'json');
    assert.equal(json.code, 1, json.err);
    assert.deepEqual(JSON.parse(json.out), lines);
    const text = await tsmesh('check', '--kubeconfig', kubeconfig);
    assert.equal(text.code, 1, text.err);
    assert.ok(text.out.includes(servers.a) && !text.out.includes(servers.b), text.out);
  });

  it('check: refuses another output format with the usage (exit 2), before any request', async () => {
    const r = await tsmesh('check', '--kubeconfig', kubeconfig, '-o', 'wide');
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    assert.match(r.err, /^tsmesh check: -o\/--output "wide" is not one of text, json, yaml\n\nUsage: tsmesh check/);
  });

  it('uninstall: goes to the API server of --context; an unknown context is named with those there are', async () => {
    const r = await tsmesh('uninstall', '--dry-run', '--kubeconfig', kubeconfig, '--context', 'b');
    assert.equal(r.code, 1);
    assert.match(r.out, new RegExp(`^Removing tsmesh from ${servers.b} \\(dry run`));
    const unknown = await tsmesh('uninstall', '--kubeconfig', kubeconfig, '--context', 'c');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /^tsmesh uninstall: context "c" is not in the kubeconfig \(contexts: a, b\)/);
  });

  it('install --dry-run: -o json is a v1 List of the same objects the YAML holds', async () => {
    const caDir = join(dir, 'ca');
    assert.equal((await tsmesh('ca', 'init', '--out', caDir)).code, 0);
    const yaml = await tsmesh('install', '--dry-run', '--ca-dir', caDir);
    assert.equal(yaml.code, 0, yaml.err);
    const fromYaml = parseAllDocuments(yaml.out).map((d) => d.toJS() as unknown).filter((o) => o !== null);
    const json = await tsmesh('install', '--dry-run', '--ca-dir', caDir, '-o', 'json');
    assert.equal(json.code, 0, json.err);
    const list = JSON.parse(json.out) as { apiVersion: string; kind: string; items: unknown[] };
    assert.deepEqual([list.apiVersion, list.kind], ['v1', 'List']);
    assert.ok(list.items.length > 10, `${list.items.length} objects`);
    assert.deepEqual(list.items, fromYaml);
    assert.equal((await tsmesh('install', '--dry-run', '--ca-dir', caDir, '--output=yaml')).out, yaml.out);
  });

  it('install: refuses -o without --dry-run and another format, with the usage (exit 2)', async () => {
    const applying = await tsmesh('install', '--kubeconfig', kubeconfig, '-o', 'json');
    assert.equal(applying.code, 2);
    assert.match(applying.err, /^tsmesh install: -o\/--output prints the manifests: use it with --dry-run\n\nUsage: tsmesh install/);
    const bad = await tsmesh('install', '--dry-run', '-o', 'toml');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^tsmesh install: -o\/--output "toml" is not one of yaml, json\n/);
  });
});
