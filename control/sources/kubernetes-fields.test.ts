// What the informers keep of each object (kubernetes-fields.ts), against the
// real API server tier: a list read in pages and the objects of later watch
// events are cached as the fields the mapping reads, without the server's
// managedFields, the containers or the status beyond the phase. That the
// mapping gives the same on kept objects as on whole ones is checked on every
// golden case (kubernetes-model.test.ts).
import assert from 'node:assert/strict';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { createLogger } from '../../lib/log.js';
import { createNamespace, createServiceAccount, deleteNamespace, eventually, skipWithoutApiServer, startApiServer, type ApiServer } from '../../test/k8s/apiserver.js';
import { podFields, type PodFields } from './kubernetes-fields.js';
import { ResilientInformer, watchErrorsCounter, type ListPage } from './kubernetes-informer.js';
import { INIT_CONTAINER, STATUS_ANNOTATION } from '../../contract/names.js';

const NS = 'kept';

function pod(i: number): V1Pod {
  return {
    metadata: {
      name: `web-${i}`,
      labels: { app: 'web' },
      annotations: { [STATUS_ANNOTATION]: '{"version":"0.1.0"}', 'tsmesh.io/mtls-mode': 'STRICT', 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"object"}' },
    },
    spec: {
      serviceAccountName: 'web',
      automountServiceAccountToken: false,
      nodeName: 'node-1',
      initContainers: [{ name: INIT_CONTAINER, image: 'tsmesh', args: ['init', '--skip-inbound-ports=25'] }],
      containers: [{ name: 'app', image: 'app:1', env: [{ name: 'A', value: 'b' }] }],
    },
  };
}

describe('control/sources/kubernetes-fields on the real API server', function () {
  this.timeout(120_000);
  let server: ApiServer;
  let core: CoreV1Api;

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    core = server.kc.makeApiClient(CoreV1Api);
    await createNamespace(server.kc, NS);
    await createServiceAccount(server.kc, NS, 'web');
    for (let i = 0; i < 7; i++) await core.createNamespacedPod({ namespace: NS, body: pod(i) });
  });
  after(async function () {
    if (!server) return;
    await deleteNamespace(server.kc, NS).catch(() => undefined);
    await server.stop();
  });

  it('lists in pages and caches, listed or watched, only the fields the mapping reads', async function () {
    const pages: ListPage[] = [];
    const informer = new ResilientInformer<PodFields, V1Pod>(
      server.kc,
      {
        resource: 'pods',
        path: `/api/v1/namespaces/${NS}/pods`,
        list: (page) => {
          pages.push(page);
          return core.listNamespacedPod({ namespace: NS, ...page });
        },
        keep: podFields,
      },
      { log: createLogger('control', 'warn', () => undefined), errors: watchErrorsCounter(new Registry()), onChange: () => undefined, listPageSize: 3 },
    );
    informer.start();
    try {
      await eventually(async () => (informer.synced && informer.list().length === 7 ? true : undefined), 20_000, 'the 7 pods listed');
      // 7 pods in pages of 3: the second and third pages continue the first.
      assert.deepEqual(pages.map((p) => [p.limit, p._continue !== undefined]), [[3, false], [3, true], [3, true]]);
      const listed = informer.get('web-3', NS)!;
      const uid = listed.metadata?.uid;
      assert.ok(uid && listed.metadata?.resourceVersion);
      assert.deepEqual(listed, {
        metadata: { name: 'web-3', namespace: NS, uid, resourceVersion: listed.metadata?.resourceVersion, annotations: { [STATUS_ANNOTATION]: '{"version":"0.1.0"}', 'tsmesh.io/mtls-mode': 'STRICT' } },
        spec: { serviceAccountName: 'web', initContainers: [{ name: INIT_CONTAINER, args: ['init', '--skip-inbound-ports=25'] }] },
        status: { phase: 'Pending' },
      });

      // A watched change: the cache takes its new annotation, and keeps no more of it than of a listed pod.
      await core.patchNamespacedPod({ namespace: NS, name: 'web-3', body: [{ op: 'replace', path: '/metadata/annotations/tsmesh.io~1mtls-mode', value: 'PERMISSIVE' }] });
      const watched = await eventually(async () => {
        const p = informer.get('web-3', NS);
        return p?.metadata?.annotations?.['tsmesh.io/mtls-mode'] === 'PERMISSIVE' ? p : undefined;
      }, 10_000, 'the patched annotation in the cache');
      assert.deepEqual(Object.keys(watched).sort(), ['metadata', 'spec', 'status']);
      assert.deepEqual(Object.keys(watched.metadata!).sort(), ['annotations', 'name', 'namespace', 'resourceVersion', 'uid']);
      assert.deepEqual(watched.spec, listed.spec);

      await core.deleteNamespacedPod({ namespace: NS, name: 'web-0', gracePeriodSeconds: 0 });
      await eventually(async () => (informer.get('web-0', NS) === undefined ? true : undefined), 10_000, 'the deleted pod gone from the cache');
      assert.equal(informer.list().length, 6);
    } finally {
      informer.stop();
    }
  });
});
