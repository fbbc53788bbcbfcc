// An HTTP/2 app that goes away and comes back, behind a real sidecar pair on
// loopback: the server sidecar's h2c session to the app must end with the
// app's connection (its FIN), or every stream after it waits on a
// connection nobody reads (in a soak, HTTP/2 calls timed out for good after
// one replica's app restarted).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { startSidecar } from './sidecar.js';
import { FixedConfig, FixedIdentity, issueCredentials } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
describe('an HTTP/2 app that restarts, behind a sidecar pair on loopback', function () {
  this.timeout(60_000);
  it('is answered 503 app-refused while it is gone and served again at once when it is back', async () => {
    const { ca } = await newRootCa();
    let port = 0;
    const start = async (): Promise<{ app: Http2Server; sockets: Set<Socket> }> => {
      const sockets = new Set<Socket>();
      const app = createH2cServer((req, res) => res.end('ok'));
      app.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
      app.listen(port, '127.0.0.1');
      await once(app, 'listening');
      port = (app.address() as AddressInfo).port;
      return { app, sockets };
    };
    let app = await start();
    const b = await startSidecar({ identity: new FixedIdentity(issueCredentials(ca, API)), config: new FixedConfig({}), log: silentLogger, host: '127.0.0.1', outboundPort: 0, inboundPort: 0, inboundOriginalDestination: () => ({ address: '127.0.0.1', port, family: 'IPv4' }) });
    const a = await startSidecar({ identity: new FixedIdentity(issueCredentials(ca, WEB)), config: new FixedConfig({ services: [{ name: 'api', namespace: 'shop', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, protocol: 'auto', targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }] }), log: silentLogger, host: '127.0.0.1', outboundPort: 0, inboundPort: 0, outboundOriginalDestination: () => ({ address: '10.96.0.10', port: 80, family: 'IPv4' }) });
    const client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    client.on('error', () => undefined);
    const one = (): Promise<string> => new Promise((resolve) => {
      const s = client.request({ ':path': '/' });
      let status = '';
      const t = setTimeout(() => { s.close(); resolve('timeout'); }, 2000);
      s.on('response', (h) => (status = String(h[':status'])));
      s.resume();
      s.on('end', () => { clearTimeout(t); resolve(status); });
      s.on('error', (e) => { clearTimeout(t); resolve(`error ${e.message}`); });
    });
    assert.deepEqual(await Promise.all([one(), one(), one()]), ['200', '200', '200']);
    for (const s of app.sockets) s.destroy();
    app.app.close();
    assert.deepEqual(await Promise.all([one(), one()]), ['503', '503']);
    app = await start();
    const after: string[] = [];
    for (let i = 0; i < 10; i++) after.push(await one());
    client.close(); await a.drain(0); await b.drain(0); app.app.close(); for (const s of app.sockets) s.destroy();
    assert.deepEqual(after, Array(10).fill('200'));
  });
});
