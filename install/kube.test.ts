// Kube.request against an HTTP server on loopback that breaks its first
// connections mid-answer, as an overloaded API server or a relay can: the
// idempotent requests are sent again and succeed; a POST is not; the error
// that is left says what broke and what to do. (A local server stands in for
// the API server here: a real one cannot be made to break a connection on cue.)
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { Kube } from './kube.js';

function kubeFor(port: number): Kube {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return new Kube(kc);
}

describe('install: Kube.request over a connection that breaks', function () {
  let server: Server;
  let breakFirst = 0;
  const seen: string[] = [];

  before(async function () {
    server = createServer((req, res) => {
      seen.push(req.method!);
      req.resume();
      if (breakFirst > 0) {
        breakFirst--;
        // Half an answer, then the connection goes: the client sees "aborted".
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"kind":');
        setTimeout(() => res.socket?.destroy(), 10);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"ConfigMap","metadata":{"name":"x"}}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => (seen.length = 0));

  it('sends a server-side apply again after its answer broke off, and takes the answer that came whole', async function () {
    breakFirst = 2;
    const kube = kubeFor((server.address() as AddressInfo).port);
    const res = await kube.request('PATCH', '/api/v1/namespaces/a/configmaps/x', { body: '{}', contentType: 'application/apply-patch+yaml' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { kind: 'ConfigMap', metadata: { name: 'x' } });
    assert.deepEqual(seen, ['PATCH', 'PATCH', 'PATCH']);
  });

  it('gives up after three tries with an error that names the server and what to do', async function () {
    breakFirst = 3;
    const kube = kubeFor((server.address() as AddressInfo).port);
    await assert.rejects(kube.request('GET', '/api/v1/namespaces'), (e: Error) => {
      assert.match(e.message, /^GET \/api\/v1\/namespaces: the connection to http:\/\/127\.0\.0\.1:\d+ broke before its answer was whole \(/);
      assert.match(e.message, /run the command again/);
      return true;
    });
    assert.deepEqual(seen, ['GET', 'GET', 'GET']);
  });

  it('never sends a POST twice', async function () {
    breakFirst = 1;
    const kube = kubeFor((server.address() as AddressInfo).port);
    await assert.rejects(kube.request('POST', '/api/v1/namespaces', { body: {} }), /broke before its answer was whole/);
    assert.deepEqual(seen, ['POST']);
    breakFirst = 0;
  });
});
