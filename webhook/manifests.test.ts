import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { injectManifests, ManifestError, podTemplateOf } from './manifests.js';
import { TEST_MESH, TEST_VERSION } from './testdata/fixtures.js';

const opts = { version: TEST_VERSION, source: 'app.yaml' };
const pod = (name: string, extra = '') => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n${extra}spec:\n  containers:\n    - name: app\n      image: x\n`;
const js = (text: string) => parseAllDocuments(text, { version: '1.1' }).map((d) => d.toJS() as Record<string, any>);

describe('injectManifests', function () {
  it('finds the pod template of each kind', function () {
    const template = { metadata: {}, spec: { containers: [] } };
    assert.equal(podTemplateOf({ kind: 'CronJob', spec: { jobTemplate: { spec: { template } } } }), template);
    assert.equal(podTemplateOf({ kind: 'DaemonSet', spec: { template } }), template);
    assert.equal(podTemplateOf({ kind: 'Service', spec: {} }), undefined);
  });

  it('reports each workload, keeps other documents as written, and drops empty ones', function () {
    const text = `# a config\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}  # inline\n---\n---\n${pod('a')}---\n${pod('b', '  annotations:\n    tsmesh.io/inject: disabled\n')}`;
    const { output, reports } = injectManifests(text, TEST_MESH, opts);
    assert.deepEqual(reports, [
      { resource: 'pod/a', outcome: 'injected' },
      { resource: 'pod/b', outcome: 'skipped', message: 'the pod opted out with annotation tsmesh.io/inject: disabled' },
    ]);
    assert.ok(output.startsWith('# a config\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: c } # inline\n---\n'), output);
    const docs = js(output);
    assert.equal(docs.length, 3);
    assert.equal(docs[1]!['spec']['initContainers'].length, 2);
    assert.equal(docs[2]!['spec']['initContainers'], undefined);
  });

  it('uses the namespace given for objects that name none', function () {
    const { reports } = injectManifests(pod('sys'), TEST_MESH, { ...opts, namespace: 'kube-system' });
    assert.equal(reports[0]!.outcome, 'skipped');
    assert.match(reports[0]!.message!, /kube-system is never meshed/);
  });

  it('names the document and resource of what it cannot inject', function () {
    const cases: [string, RegExp][] = [
      ['apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  generateName: web-\nspec: {}\n', /^app\.yaml: document 1 \(deployment\/web-\*\): has no pod template at spec\.template$/],
      [`${pod('ok')}---\n${pod('bad', '  annotations:\n    tsmesh.io/opaque-ports: x\n')}`, /^app\.yaml: document 2 \(pod\/bad\): annotation tsmesh\.io\/opaque-ports: "x"/],
      ['kind: List\nitems:\n  - kind: Pod\n    metadata: {name: p}\n    spec: {containers: [{name: tsmesh-init}]}\n', /document 1, item 0 \(pod\/p\): container name tsmesh-init is reserved/],
      ['a: [\n', /^app\.yaml: document 1: /],
    ];
    for (const [text, message] of cases) assert.throws(() => injectManifests(text, TEST_MESH, opts), (e: unknown) => e instanceof ManifestError && message.test(e.message));
  });
});
