// `tsmesh inject` as an operator runs it: files or stdin in, injected YAML out.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');
const TESTDATA = resolve(import.meta.dirname, '..', '..', 'webhook', 'testdata');

function tsmesh(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'inject', ...args], { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function docs(yaml: string): Record<string, any>[] {
  return parseAllDocuments(yaml, { version: '1.1' }).map((d) => d.toJS() as Record<string, any>);
}

const initNames = (template: Record<string, any>): string[] => (template['spec']['initContainers'] ?? []).map((c: { name: string }) => c.name);

describe('tsmesh inject', function () {
  this.timeout(30_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tsmesh-cli-inject-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('injects every workload of a multi-document stream from stdin and passes other documents through', function () {
    const input = [
      readFileSync(join(TESTDATA, 'deployment-two-containers.yaml'), 'utf8'),
      '# the Service stays as written\napiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  ports:\n    - port: 80\n',
      readFileSync(join(TESTDATA, 'cronjob.yaml'), 'utf8'),
      readFileSync(join(TESTDATA, 'host-network.yaml'), 'utf8'),
    ].join('---\n');
    const r = tsmesh(['--image', 'registry.example/tsmesh:dev'], input);
    assert.equal(r.code, 0, r.err);
    const out = docs(r.out);
    assert.deepEqual(out.map((d) => d['kind']), ['Deployment', 'Service', 'CronJob', 'Pod']);
    assert.deepEqual(initNames(out[0]!['spec']['template']), ['tsmesh-init', 'tsmesh-proxy']);
    assert.equal(out[0]!['spec']['template']['spec']['initContainers'][1].image, 'registry.example/tsmesh:dev');
    assert.deepEqual(initNames(out[2]!['spec']['jobTemplate']['spec']['template']), ['tsmesh-init', 'tsmesh-proxy']);
    assert.equal(out[3]!['spec']['initContainers'], undefined);
    assert.match(r.out, /# the Service stays as written/);
    assert.match(r.err, /^deployment\/shop injected$/m);
    assert.match(r.err, /^cronjob\/cleanup injected$/m);
    assert.match(r.err, /^pod\/node-agent skipped: the pod uses hostNetwork/m);
  });

  it('is idempotent: injecting its own output changes nothing', function () {
    const once = tsmesh([join(TESTDATA, 'statefulset.yaml')]);
    assert.equal(once.code, 0, once.err);
    const twice = tsmesh([], once.out);
    assert.equal(twice.code, 0, twice.err);
    assert.deepEqual(docs(twice.out), docs(once.out));
    assert.match(twice.err, /statefulset\/cache skipped: the pod already carries tsmesh\.io\/status/);
  });

  it('injects the items of a List, and reads several files', function () {
    const list = { apiVersion: 'v1', kind: 'List', items: [docs(readFileSync(join(TESTDATA, 'job.yaml'), 'utf8'))[0]] };
    const file = join(dir, 'list.json');
    writeFileSync(file, JSON.stringify(list));
    const r = tsmesh([file, join(TESTDATA, 'pod-with-init-containers.yaml')]);
    assert.equal(r.code, 0, r.err);
    const [outList, pod] = docs(r.out);
    assert.deepEqual(initNames(outList!['items'][0]['spec']['template']), ['tsmesh-init', 'tsmesh-proxy']);
    assert.deepEqual(initNames(pod!), ['tsmesh-init', 'tsmesh-proxy', 'wait-for-db', 'migrate']);
  });

  it('takes mesh settings from a config file, flags winning', function () {
    const config = join(dir, 'mesh.yaml');
    writeFileSync(config, 'trustDomain: example.org\nimagePullPolicy: Always\nproxyResources:\n  memoryLimit: 1Gi\n  cpuLimit: "2"\n');
    const r = tsmesh(['--config', config, '--proxy-memory-limit', '512Mi', join(TESTDATA, 'job.yaml')]);
    assert.equal(r.code, 0, r.err);
    const proxy = docs(r.out)[0]!['spec']['template']['spec']['initContainers'][1];
    assert.equal(proxy.imagePullPolicy, 'Always');
    assert.deepEqual(proxy.resources.limits, { memory: '512Mi', cpu: '2' });
    assert.equal(proxy.env.find((e: { name: string }) => e.name === 'TSMESH_TRUST_DOMAIN').value, 'example.org');
  });

  it('refuses a bad override, naming the file, the document, the resource and the annotation; writes nothing', function () {
    const r = tsmesh([join(TESTDATA, 'bad-proxy-log-level.yaml')]);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, /^tsmesh inject: .*bad-proxy-log-level\.yaml: document 1 \(pod\/bad-proxy-log-level\): annotation tsmesh\.io\/proxy-log-level: "verbose" is not a log level; expected one of error, warn, info, debug/);
  });

  it('says what is wrong with bad mesh settings and unreadable input', function () {
    const badPolicy = tsmesh(['--image-pull-policy', 'Sometimes', join(TESTDATA, 'job.yaml')]);
    assert.equal(badPolicy.code, 1);
    assert.match(badPolicy.err, /imagePullPolicy: "Sometimes" is not valid; expected Always, IfNotPresent, Never/);
    const missing = tsmesh([join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read .*nope\.yaml \(ENOENT\); give a YAML file, or - for stdin/);
    const config = join(dir, 'typo.yaml');
    writeFileSync(config, 'trustDomian: example.org\n');
    const typo = tsmesh(['--config', config, join(TESTDATA, 'job.yaml')]);
    assert.equal(typo.code, 1);
    assert.match(typo.err, /unknown setting "trustDomian"; known: trustDomain/);
    const broken = tsmesh([], 'kind: Pod\nmetadata: [\n');
    assert.equal(broken.code, 1);
    assert.match(broken.err, /stdin: document 1:/);
  });

  it('reads stdin from a pipe whose writer is slower than its start-up (- and -f -)', async function () {
    // How long this machine takes to start the command (tsx included); the writer waits twice that and more,
    // so the command has long been waiting on its stdin, as behind a slow kubectl or curl. readFileSync(0)
    // failed there with EAGAIN (stdin had become a non-blocking stream).
    const t0 = Date.now();
    assert.equal(tsmesh(['--help']).code, 0);
    const delay = Math.min(10, (2 * (Date.now() - t0)) / 1000 + 1);
    const viaPipe = (args: string[]): Promise<{ code: number | null; out: string; err: string }> =>
      new Promise((done, fail) => {
        const script = `file=$1 main=$2; shift 2; (sleep ${delay.toFixed(1)}; cat "$file") | exec "$0" --import tsx "$main" inject "$@"`;
        const child = spawn('sh', ['-c', script, process.execPath, join(TESTDATA, 'job.yaml'), MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let [out, err] = ['', ''];
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('error', fail);
        child.on('close', (code) => done({ code, out, err }));
      });
    for (const args of [['-'], ['-f', '-']]) {
      const r = await viaPipe(args);
      assert.equal(r.code, 0, `inject ${args.join(' ')}: ${r.err}`);
      assert.deepEqual(initNames(docs(r.out)[0]!['spec']['template']), ['tsmesh-init', 'tsmesh-proxy'], args.join(' '));
      assert.match(r.err, /^job\/nightly-report injected$/m);
    }
  });

  it('takes files as kubectl does: -f FILE and --filename FILE, repeated, - for stdin, beside FILE arguments', function () {
    const r = tsmesh(['-f', join(TESTDATA, 'job.yaml'), '--filename', '-', join(TESTDATA, 'cronjob.yaml')], readFileSync(join(TESTDATA, 'statefulset.yaml'), 'utf8'));
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(docs(r.out).map((d) => d['kind']), ['Job', 'StatefulSet', 'CronJob']);
    assert.deepEqual(r.err.trim().split('\n'), ['job/nightly-report injected', 'statefulset/cache injected', 'cronjob/cleanup injected']);
    const twice = tsmesh(['-f', '-', '-'], '');
    assert.equal(twice.code, 2);
    assert.match(twice.err, /^tsmesh inject: stdin \(-\) can be read once/);
    const empty = tsmesh(['-f', '']);
    assert.equal(empty.code, 2);
    assert.match(empty.err, /^tsmesh inject: -f needs a file name/);
    const missing = tsmesh(['-f']);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /^tsmesh inject: Option '-f, --filename <value>' argument missing/);
  });

  it('takes the namespace of objects that name none from -n', function () {
    const pod = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: a\n      image: b\n';
    const r = tsmesh(['-n', 'kube-system'], pod);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /^pod\/p skipped: namespace kube-system is never meshed/m);
    assert.equal(docs(r.out)[0]!['spec']['initContainers'], undefined);
  });

  it('writes JSON with -o json: the object, or a v1 List of several; refuses other formats with exit 2', function () {
    const one = tsmesh(['-o', 'json', '-f', join(TESTDATA, 'job.yaml')]);
    assert.equal(one.code, 0, one.err);
    const job = JSON.parse(one.out) as Record<string, any>;
    assert.equal(job['kind'], 'Job');
    assert.deepEqual(initNames(job['spec']['template']), ['tsmesh-init', 'tsmesh-proxy']);
    const two = tsmesh(['--output=json', '-f', join(TESTDATA, 'job.yaml'), '-f', join(TESTDATA, 'host-network.yaml')]);
    assert.equal(two.code, 0, two.err);
    const list = JSON.parse(two.out) as Record<string, any>;
    assert.deepEqual([list['apiVersion'], list['kind'], list['items'].map((i: Record<string, unknown>) => i['kind'])], ['v1', 'List', ['Job', 'Pod']]);
    assert.deepEqual(docs(tsmesh(['-o', 'yaml', '-f', join(TESTDATA, 'job.yaml')]).out), [job]);
    const bad = tsmesh(['-o', 'xml', '-f', join(TESTDATA, 'job.yaml')]);
    assert.equal(bad.code, 2);
    assert.equal(bad.out, '');
    assert.match(bad.err, /^tsmesh inject: -o\/--output "xml" is not one of yaml, json\n/);
  });

  it('refuses an annotation YAML reads as a number, and says to quote it', function () {
    const r = tsmesh([], 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    tsmesh.io/skip-inbound-ports: 8080\nspec:\n  containers:\n    - name: a\n      image: b\n');
    assert.equal(r.code, 1);
    assert.match(r.err, /tsmesh\.io\/skip-inbound-ports: 8080 is not a string; annotations values are strings, so quote it \("8080"\)/);
  });
});
