// The discovery stream end to end: a control plane on a mesh file, a proxy's
// StreamConfigSource over real mTLS, changes pushed, outages survived.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import type { CertificateAuthority } from '../ca/authority.js';
import type { CaKeyPair } from '../ca/root.js';
import { TokenFileAuthenticator } from '../ca/authn/token-file.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { StreamConfigSource } from '../proxy/config/stream.js';
import type { ProxyConfig } from '../contract/proxy-config.js';
import { freePort } from '../lib/ports.js';
import { issueCredentials } from '../proxy/testdata/mesh.js';
import { startControlPlane, type RunningControlPlane } from './plane.js';
import { FileMeshSource } from './sources/file.js';
// Certificates signed by the mesh root that are no X.509-SVID of it, made as the SVID corpus makes them.
import { KU, signLeaf } from '../test/svid/corpus.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

function meshFile(endpoints: string[], extra = ''): string {
  return `apiVersion: tsmesh.io/v1alpha1
kind: Mesh
mesh: { mtlsMode: STRICT }
services:
  - name: api
    namespace: shop
    clusterIPs: [10.96.0.10]
    ports: [{ port: 80, targetPort: 8080 }]
    endpoints: [${endpoints.map((a) => `{ address: ${a}, serviceAccount: api }`).join(', ')}]
${extra}`;
}

async function until<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('discovery stream (control plane -> proxy, mTLS, NDJSON)', function () {
  this.timeout(30_000);
  let dir: string;
  let file: string;
  let ca: CertificateAuthority;
  let root: CaKeyPair;
  let plane: RunningControlPlane | undefined;
  let source: FileMeshSource;
  let stream: StreamConfigSource;
  let port: number;
  const seen: ProxyConfig[] = [];

  const start = async () => {
    plane = await startControlPlane({
      authority: ca,
      authenticator: new TokenFileAuthenticator([]),
      meshSource: source,
      log: silentLogger,
      host: '127.0.0.1',
      port,
      adminPort: 0,
    });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-stream-'));
    file = join(dir, 'mesh.yaml');
    writeFileSync(file, meshFile(['10.244.1.5']));
    ({ ca, root } = await newRootCa());
    source = new FileMeshSource(file, silentLogger, 20);
    port = await freePort();
    await start();
    const creds = issueCredentials(ca, WEB);
    stream = new StreamConfigSource({
      address: `127.0.0.1:${port}`,
      tls: () => ({ key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem }),
      log: silentLogger,
    });
    stream.onChange((c) => seen.push(c));
    stream.start();
  });
  after(async () => {
    stream?.close();
    source?.close();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the current config at once, with endpoint identities and the trust bundle', async () => {
    const c = await until(() => stream.current());
    assert.deepEqual(c.services[0]!.endpoints, [{ address: '10.244.1.5', identity: 'spiffe://cluster.local/ns/shop/sa/api' }]);
    assert.equal(c.trustBundle, ca.trustBundle.toPem());
  });

  it('pushes a change of the mesh within a second', async () => {
    const before = stream.current()!.version;
    const t0 = Date.now();
    writeFileSync(file, meshFile(['10.244.1.5', '10.244.2.7']));
    const c = await until(() => (stream.current()!.version !== before ? stream.current() : undefined));
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.equal(c.services[0]!.endpoints.length, 2);
  });

  it('records push latency from the proxy\'s acknowledgements', async () => {
    const text = await plane!.registry.getSingleMetricAsString('tsmesh_control_push_latency_seconds');
    assert.match(text, /tsmesh_control_push_latency_seconds_count [1-9]/);
    assert.match(await plane!.registry.getSingleMetricAsString('tsmesh_control_connected_proxies'), /tsmesh_control_connected_proxies 1/);
  });

  it('lists the proxies on the stream with their identity and the address they connect from (the dashboard scrapes them)', () => {
    assert.deepEqual(plane!.discovery!.connectedProxies(), [{ identity: { spiffeId: WEB, namespace: 'shop', serviceAccount: 'web' }, address: '127.0.0.1' }]);
  });

  it('refuses a caller without a mesh certificate (401)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/v1/config', ca: ca.trustBundle.toPem(), servername: 'localhost' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 401);
  });

  it('refuses (401, saying why) a client certificate from the mesh root that is not an X.509-SVID of its trust domain', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
    const ask = (cert: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port, path: '/v1/config', ca: ca.trustBundle.toPem(), servername: 'localhost', key: keyPem, cert }, (res) => {
          // A caller it takes gets the stream, which never ends: its status is the answer.
          if (res.statusCode === 200) {
            req.destroy();
            resolve({ status: 200, body: '' });
            return;
          }
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const leaf = { ca: false, keyUsage: [KU.digitalSignature] };
    const foreign = await ask(signLeaf({ ...leaf, uris: ['spiffe://evil.example/ns/shop/sa/web'] }, root, key));
    assert.equal(foreign.status, 401);
    assert.match(foreign.body, /trust domain evil\.example; this mesh accepts only trust domain cluster\.local/);
    const caTrue = await ask(signLeaf({ ...leaf, ca: true, uris: [WEB] }, root, key));
    assert.equal(caTrue.status, 401);
    assert.match(caTrue.body, /CA:TRUE/);
    assert.equal((await ask(signLeaf({ ...leaf, uris: [WEB] }, root, key))).status, 200, 'the same certificate as an SVID is served');
  });

  it('keeps the last config while the control plane is down, and catches up after it returns', async () => {
    const last = stream.current()!;
    await plane!.close();
    plane = undefined;
    writeFileSync(file, meshFile(['10.244.1.5', '10.244.2.7', '10.244.3.9']));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(stream.current(), last, 'the proxy keeps what it had');
    await start();
    const c = await until(() => (stream.current()!.services[0]!.endpoints.length === 3 ? stream.current() : undefined), 10_000);
    assert.equal(c.services[0]!.endpoints[2]!.address, '10.244.3.9');
  });

  it('a bad mesh file keeps the last good model', async () => {
    const count = seen.length;
    writeFileSync(file, 'kind: Mesh\nservices: [');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(seen.length, count);
    assert.equal(stream.current()!.services[0]!.endpoints.length, 3);
  });
});
