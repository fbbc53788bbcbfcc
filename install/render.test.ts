// `tsmesh install --dry-run`: golden files of the printed manifests (the
// generated CA's base64 replaced by a placeholder), the CA Secret it makes or
// brings, the flags' checks, and agreement with manifests/kustomization.yaml
// (and with `kubectl kustomize` where kubectl is installed).
// Refresh the golden files with UPDATE_GOLDEN=1.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CA_FILES, writeRootCa } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { caFilesFromSecret, checkCaFiles, droppedRoots, generateCa } from './ca.js';
import { findManifestsDir, kustomizationResources, readManifestFiles, renderInstall } from './render.js';

const MAIN = resolve(import.meta.dirname, '..', 'cli', 'main.ts');
const TESTDATA = resolve(import.meta.dirname, 'testdata');
const MANIFESTS = findManifestsDir();

function tsmesh(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The same, without blocking: several CLI runs start at once (each spends seconds compiling on a loaded machine). */
function tsmeshAsync(args: string[]): Promise<{ code: number | null; err: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.once('close', (code) => done({ code, err }));
  });
}

/** The base64 of a generated CA differs on every run. */
const normalize = (text: string): string => text.replace(/^( {2}(?:root-cert|root-key)\.pem): \S+$/gm, '$1: <generated: base64 of the PEM>');

function docs(text: string): Record<string, any>[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((d) => d.toJS() as Record<string, any> | null)
    .filter((d): d is Record<string, any> => d !== null);
}

function golden(name: string, actual: string): void {
  const file = join(TESTDATA, name);
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, actual);
  assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
  assert.equal(actual, readFileSync(file, 'utf8'), `${name} differs; if the change is intended, refresh it with UPDATE_GOLDEN=1`);
}

const onPath = (cmd: string): boolean => (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, cmd)));

describe('tsmesh install --dry-run', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tsmesh-install-render-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the manifests with a new CA (golden: testdata/dry-run.golden.yaml)', function () {
    const r = tsmesh(['install', '--dry-run']);
    assert.equal(r.code, 0, r.err);
    golden('dry-run.golden.yaml', normalize(r.out));
  });

  it('lays the flags over them (golden: testdata/dry-run-flags.golden.yaml)', function () {
    const r = tsmesh(['install', '--dry-run', '--image', 'tsmesh:kind', '--trust-domain', 'example.org', '--cert-ttl', '2h', '--failure-policy', 'Ignore']);
    assert.equal(r.code, 0, r.err);
    golden('dry-run-flags.golden.yaml', normalize(r.out));
    const all = docs(r.out);
    const deployment = all.find((d) => d['kind'] === 'Deployment')!;
    const container = deployment['spec']['template']['spec']['containers'][0];
    assert.equal(container['image'], 'tsmesh:kind');
    assert.deepEqual(container['args'], ['control-plane', '--ca-dir=/etc/tsmesh/ca', '--trust-domain=example.org', '--log-level=info', '--proxy-image=tsmesh:kind', '--cert-ttl=2h']);
    assert.equal(all.find((d) => d['kind'] === 'ConfigMap')!['data']['trustDomain'], 'example.org');
    assert.deepEqual(all.find((d) => d['kind'] === 'MutatingWebhookConfiguration')!['webhooks'].map((w: { failurePolicy: string }) => w.failurePolicy), ['Ignore']);
    const secret = all.find((d) => d['kind'] === 'Secret')!;
    const root = new X509Certificate(caFilesFromSecret(secret)[CA_FILES.rootCert]!);
    assert.equal(root.subjectAltName, 'URI:spiffe://example.org');
  });

  it('prints every file no flag touches byte for byte, in the kustomization\'s order, the CA Secret after the Namespace', function () {
    const out = tsmesh(['install', '--dry-run']).out;
    const files = kustomizationResources(MANIFESTS);
    let at = 0;
    for (const f of files) {
      const text = readFileSync(join(MANIFESTS, f), 'utf8').trimEnd();
      const i = out.indexOf(`# Source: manifests/${f}\n${text}\n`, at);
      assert.ok(i >= at, `manifests/${f} is not printed as it is, after the previous file`);
      at = i;
    }
    const kinds = docs(out).map((d) => `${d['kind']} ${d['metadata']['name']}`);
    assert.equal(kinds[0], 'Namespace tsmesh-system');
    assert.equal(kinds[1], 'Secret tsmesh-ca');
  });

  it('makes a root CA for the trust domain that the control plane can load', async function () {
    const secret = docs(tsmesh(['install', '--dry-run']).out).find((d) => d['kind'] === 'Secret')!;
    assert.equal(secret['metadata']['namespace'], 'tsmesh-system');
    const files = caFilesFromSecret(secret);
    assert.deepEqual(Object.keys(files).sort(), [CA_FILES.rootCert, CA_FILES.rootKey]);
    const root = new X509Certificate(files[CA_FILES.rootCert]!);
    assert.ok(root.ca);
    assert.ok(root.checkPrivateKey(createPrivateKey(files[CA_FILES.rootKey]!)));
    assert.equal(root.subjectAltName, 'URI:spiffe://cluster.local');
    const years = (Date.parse(root.validTo) - Date.now()) / (365 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, `valid for ${years} years`);
    await checkCaFiles(files, 'cluster.local');
  });

  it('puts a CA brought with --ca-dir into the Secret as it is, and refuses a folder whose key does not fit', async function () {
    const ca = join(dir, 'ca');
    await writeRootCa(ca, await createRootCa('cluster.local'));
    const r = tsmesh(['install', '--dry-run', '--ca-dir', ca]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /# The mesh CA, from --ca-dir/);
    const files = caFilesFromSecret(docs(r.out).find((d) => d['kind'] === 'Secret')!);
    for (const f of [CA_FILES.rootCert, CA_FILES.rootKey]) assert.equal(files[f], readFileSync(join(ca, f), 'utf8'));

    const other = await createRootCa('cluster.local');
    writeFileSync(join(ca, CA_FILES.rootKey), other.keyPem);
    const bad = tsmesh(['install', '--dry-run', '--ca-dir', ca]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^tsmesh install: --ca-dir .*root-key\.pem belongs to none of the roots in root-cert\.pem/);
    const missing = tsmesh(['install', '--dry-run', '--ca-dir', join(dir, 'nothing')]);
    assert.match(missing.err, /root-cert\.pem does not exist; --ca-dir needs root-cert\.pem with root-key\.pem/);
  });

  it('refuses bad flags, naming the flag, the value and what is expected', async function () {
    const cases: [string[], number, RegExp][] = [
      [['--failure-policy', 'Sometimes'], 2, /--failure-policy "Sometimes" is not one of Fail, Ignore/],
      [['--cert-ttl', '10s'], 1, /--cert-ttl 10s is outside 1m to 30d/],
      [['--cert-ttl', '60'], 1, /--cert-ttl/],
      [['--trust-domain', 'Not A Domain'], 1, /--trust-domain "Not A Domain"/],
      [['--image', 'has space'], 1, /--image "has space" is not an image reference/],
      [['--wait', '1m'], 2, /--wait needs a cluster/],
    ];
    const runs = await Promise.all(cases.map(([flags]) => tsmeshAsync(['install', '--dry-run', ...flags])));
    for (const [i, [flags, code, message]] of cases.entries()) {
      const r = runs[i]!;
      assert.equal(r.code, code, `${flags.join(' ')}: ${r.err}`);
      assert.match(r.err, message);
    }
  });
});

describe('manifests/kustomization.yaml', function () {
  it('lists every YAML file of manifests/, each once', function () {
    const listed = kustomizationResources(MANIFESTS);
    const present = readdirSync(MANIFESTS).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    assert.deepEqual([...listed].sort(), present.sort());
    assert.equal(new Set(listed).size, listed.length);
  });

  it('renders the same objects as `kubectl kustomize manifests/`', function () {
    if (!onPath('kubectl')) {
      console.log('      skipped: kubectl is not on PATH');
      this.skip();
    }
    const key = (o: Record<string, any>): string => `${o['kind']}/${o['metadata']['namespace'] ?? ''}/${o['metadata']['name']}`;
    const byKey = (list: Record<string, any>[]): Map<string, Record<string, any>> => new Map(list.map((o) => [key(o), o]));
    const kustomized = byKey(docs(execFileSync('kubectl', ['kustomize', MANIFESTS], { encoding: 'utf8' })));
    const rendered = byKey(renderInstall({}, readManifestFiles(MANIFESTS)).objects.map((r) => r.object));
    assert.deepEqual([...rendered.keys()].sort(), [...kustomized.keys()].sort());
    for (const [k, o] of rendered) assert.deepEqual(o, kustomized.get(k), k);
  });
});

describe('CA rotation guard', function () {
  it('finds the roots a new root-cert.pem leaves out', async function () {
    const a = await generateCa('cluster.local');
    const b = await generateCa('cluster.local');
    const aPem = a.files[CA_FILES.rootCert]!;
    const bPem = b.files[CA_FILES.rootCert]!;
    assert.deepEqual(droppedRoots(aPem, aPem + bPem), []);
    assert.deepEqual(droppedRoots(aPem, bPem).map((c) => c.fingerprint256), [new X509Certificate(aPem).fingerprint256]);
  });
});

describe('manifests/prometheus/', function () {
  const promDir = join(MANIFESTS, 'prometheus');
  const scrape = parseAllDocuments(readFileSync(join(promDir, 'scrape-config.yaml'), 'utf8'))[0]!.toJS() as { scrape_configs: { job_name: string; relabel_configs: Record<string, unknown>[] }[] };

  it('scrape-config.yaml passes promtool (kubernetes_sd_configs swapped for static_configs: Debian builds Prometheus without Kubernetes discovery)', function () {
    if (!onPath('promtool')) {
      console.log('      skipped: promtool is not on PATH (Debian package prometheus)');
      this.skip();
    }
    const tmp = mkdtempSync(join(tmpdir(), 'tsmesh-promtool-'));
    try {
      const text = readFileSync(join(promDir, 'scrape-config.yaml'), 'utf8').replace(/kubernetes_sd_configs:\n(\s+)- role: pod(\n\1 {2}namespaces:\n\1 {4}names: \[[^\]]*\])?/g, "static_configs:\n$1- targets: ['10.244.0.1:15020']");
      assert.doesNotMatch(text, /^\s+kubernetes_sd_configs:/m);
      writeFileSync(join(tmp, 'prometheus.yml'), text);
      const r = spawnSync('promtool', ['check', 'config', join(tmp, 'prometheus.yml')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('scrapes the proxies on their admin port, 15020, and keeps only meshed pods (annotation tsmesh.io/status)', function () {
    const job = scrape.scrape_configs.find((j) => j.job_name === 'tsmesh-proxies')!;
    assert.ok(job.relabel_configs.some((r) => (r['source_labels'] as string[] | undefined)?.[0] === '__meta_kubernetes_pod_annotationpresent_tsmesh_io_status' && r['action'] === 'keep'));
    assert.ok(job.relabel_configs.some((r) => r['target_label'] === '__address__' && r['replacement'] === '$1:15020'));
  });

  it('podmonitor.yaml holds PodMonitors whose proxy relabelings are the scrape config\'s', function () {
    const monitors = docs(readFileSync(join(promDir, 'podmonitor.yaml'), 'utf8'));
    assert.deepEqual(monitors.map((m) => `${m['apiVersion']} ${m['kind']} ${m['metadata']['name']}`), ['monitoring.coreos.com/v1 PodMonitor tsmesh-proxies', 'monitoring.coreos.com/v1 PodMonitor tsmesh-control-plane']);
    const camel = (r: Record<string, unknown>): Record<string, unknown> =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()), v]));
    const fromScrape = scrape.scrape_configs
      .find((j) => j.job_name === 'tsmesh-proxies')!
      .relabel_configs.map(camel)
      // The PodMonitor's path and namespace/pod labels are the Operator's own.
      .filter((r) => r['targetLabel'] !== '__metrics_path__' && r['targetLabel'] !== 'namespace' && r['targetLabel'] !== 'pod');
    assert.deepEqual(monitors[0]!['spec']['podMetricsEndpoints'][0]['relabelings'], fromScrape);
  });
});
