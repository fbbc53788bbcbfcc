// The informer's watchdog, against an API server that takes requests and never
// answers them. No real kube-apiserver can be made to hang on purpose, so this
// one is a plain HTTP server that holds every request open (the test says so);
// test/k8s covers the informer against the real one.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { createLogger } from '../../lib/log.js';
import { ResilientInformer, watchErrorsCounter } from './kubernetes-informer.js';

describe('ResilientInformer watchdog', function () {
  this.timeout(30_000);
  let server: Server;
  const held: ServerResponse[] = [];
  let watches = 0;

  before(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.url?.includes('watch=true')) watches++;
      held.push(res); // never answered
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(() => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    server.close();
  });

  it('restarts a list and watch that hangs, counting it and saying why', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'hung', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'nobody' }],
      contexts: [{ name: 'hung', cluster: 'hung', user: 'nobody' }],
      currentContext: 'hung',
    });
    const registry = new Registry();
    const errors = watchErrorsCounter(registry);
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('control', 'debug', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    // The list answers at once (an empty list); the watch it opens next is held without an answer.
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => Promise.resolve({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '7' }, items: [] });
    const informer = new ResilientInformer(kc, { resource: 'services', path: '/api/v1/services', list }, {
      log,
      errors,
      onChange: () => undefined,
      backoffInitialMs: 50,
      backoffMaxMs: 100,
      watchTimeoutSeconds: [1, 2],
      stallMarginMs: 500,
    });
    informer.start();
    try {
      // A hung watch shows no progress; after 2 s + 0.5 s the watchdog restarts the informer, which opens a new watch.
      const restarted = (): Record<string, unknown>[] => lines.filter((l) => l['msg'] === 'watch failed; retrying' && String(l['error']).startsWith('no list, watch event or error for'));
      const deadline = Date.now() + 15_000;
      while ((restarted().length < 2 || watches < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(restarted().length >= 2, JSON.stringify(lines, null, 1));
      assert.ok(watches >= 3, `${watches} watch requests`);
      assert.match(await registry.getSingleMetricAsString('tsmesh_control_watch_errors_total'), /\{resource="services"\} [2-9]/);
      assert.equal(restarted()[0]!['level'], 'warn');
    } finally {
      informer.stop();
    }
  });
});
