// The CA client against a real control plane over real TLS on loopback.
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { CertificateAuthority } from '../../ca/authority.js';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import { buildCsrPem } from '../../ca/csr.js';
import { createRootCa } from '../../ca/root.js';
import { TD, WEB, newKey, newRootCa } from '../../ca/testdata/fixtures.js';
import { silentLogger } from '../../lib/log.js';
// eslint-disable-next-line no-restricted-imports -- an integration test: the CA client against the control plane's CA over TLS
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
import { createCaClient, parseControlPlaneAddress, parseRetryAfter, type CaClientOptions } from './ca-client.js';
import { IdentityError } from './errors.js';
import { freePort } from '../../lib/ports.js';

const TOKEN = 'web-token-0123456789abcdef';

describe('CA client (real control plane over TLS)', () => {
  let plane: RunningControlPlane;
  let bundle: string;
  let dir: string;
  let tokenPath: string;
  let address: string;

  let ca: CertificateAuthority;

  before(async () => {
    ({ ca } = await newRootCa());
    bundle = ca.trustBundle.toPem();
    plane = await startControlPlane({
      authority: ca,
      authenticator: new TokenFileAuthenticator([{ token: TOKEN, spiffeId: WEB }]),
      log: silentLogger,
      host: '127.0.0.1',
      port: 0,
      adminPort: 0,
    });
    address = `127.0.0.1:${plane.caPort}`;
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-client-'));
    tokenPath = join(dir, 'token');
  });
  after(async () => {
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => writeFileSync(tokenPath, TOKEN + '\n'));

  const client = (extra: Partial<CaClientOptions> = {}) => createCaClient({ address, tokenPath, trustAnchors: () => Promise.resolve(bundle), ...extra });
  const failure = async (p: Promise<unknown>): Promise<IdentityError> => {
    const e = await p.then(
      () => assert.fail('expected the request to fail'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof IdentityError, `not an IdentityError: ${String(e)}`);
    return e;
  };

  it('gets a certificate for the key in the CSR, verifying the CA by its IP SAN', async () => {
    const key = newKey();
    const res = await client()(buildCsrPem(key, WEB));
    assert.equal(res.spiffeId, WEB);
    assert.equal(res.trustBundle, bundle);
    assert.ok(new X509Certificate(res.certChain).checkPrivateKey(key));
  });

  it('verifies the CA by DNS name when given one', async () => {
    const res = await client({ servername: 'tsmesh-control-plane.tsmesh-system.svc' })(buildCsrPem(newKey()));
    assert.equal(res.spiffeId, WEB);
  });

  it('refuses a CA whose certificate does not carry the expected name', async () => {
    const e = await failure(client({ servername: 'ca.example.com' })(buildCsrPem(newKey())));
    assert.equal(e.code, 'ca-unreachable');
    assert.match(e.message, /ERR_TLS_CERT_ALTNAME_INVALID.*did not verify for ca.example.com/);
    assert.equal(e.transient, true);
  });

  it('refuses a CA that does not chain to the trust bundle', async () => {
    const stranger = (await createRootCa(TD)).certPem;
    const e = await failure(client({ trustAnchors: () => Promise.resolve(stranger) })(buildCsrPem(newKey())));
    assert.equal(e.code, 'ca-unreachable');
    assert.match(e.message, /did not verify .* against the trust bundle/);
  });

  it('reads the token again for every request', async () => {
    const call = client();
    writeFileSync(tokenPath, 'wrong-token-0123456789abcdef');
    const e = await failure(call(buildCsrPem(newKey())));
    assert.equal(e.code, 'ca-refused');
    assert.equal(e.details.status, 401);
    assert.equal(e.details.caCode, 'unauthenticated');
    assert.match(e.message, /401 unauthenticated: unknown token/);
    assert.equal(e.transient, true);
    writeFileSync(tokenPath, TOKEN);
    assert.equal((await call(buildCsrPem(newKey()))).spiffeId, WEB);
  });

  it('names a missing or empty token file', async () => {
    let e = await failure(client({ tokenPath: join(dir, 'absent') })(buildCsrPem(newKey())));
    assert.equal(e.code, 'token-unreadable');
    assert.match(e.message, /ENOENT.*projected token volume/);
    writeFileSync(join(dir, 'empty'), '\n');
    e = await failure(client({ tokenPath: join(dir, 'empty') })(buildCsrPem(newKey())));
    assert.match(e.message, /is empty/);
  });

  it('passes on the CA code of a refusal that is not transient', async () => {
    const e = await failure(client()('not a csr'));
    assert.equal(e.details.status, 400);
    assert.equal(e.details.caCode, 'malformed-csr');
    assert.equal(e.transient, false);
  });

  it('reports a CA that is not listening', async () => {
    const port = await freePort();
    const e = await failure(client({ address: `127.0.0.1:${port}` })(buildCsrPem(newKey())));
    assert.equal(e.code, 'ca-unreachable');
    assert.match(e.message, new RegExp(`ECONNREFUSED.*127.0.0.1:${port}`));
  });

  it('gives up on a CA that accepts the connection and never answers', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s)).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    try {
      const started = Date.now();
      const e = await failure(client({ address: `127.0.0.1:${(silent.address() as AddressInfo).port}`, timeoutMs: 200 })(buildCsrPem(newKey())));
      assert.equal(e.code, 'ca-timeout');
      assert.ok(Date.now() - started < 2000);
    } finally {
      sockets.forEach((s) => s.destroy());
      silent.close();
    }
  });

  it('presents the certificate in force when the CA asks for a client certificate', async () => {
    const serving = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = ca.issue(serving.publicKey.export({ type: 'spki', format: 'der' }), {
      spiffeId: 'spiffe://cluster.local/ns/tsmesh-system/sa/tsmesh-control-plane',
      ipAddresses: ['127.0.0.1'],
    });
    const peers: (string | undefined)[] = [];
    const mtlsCa = createHttpsServer(
      { key: serving.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: issued.certChainPem, ca: bundle, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        peers.push((req.socket as TLSSocket).getPeerCertificate().subjectaltname);
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"authenticator-unavailable","message":"later"}}');
      },
    );
    mtlsCa.listen(0, '127.0.0.1');
    await once(mtlsCa, 'listening');
    try {
      const key = newKey();
      const held = ca.signWorkloadCsr(buildCsrPem(key, WEB), WEB);
      const mtlsAddress = `127.0.0.1:${(mtlsCa.address() as AddressInfo).port}`;
      let current: { key: string; cert: string } | undefined = undefined;
      const call = client({ address: mtlsAddress, clientCertificate: () => current });
      assert.equal((await failure(call(buildCsrPem(newKey())))).details.status, 503);
      current = { key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: held.certChainPem };
      await failure(call(buildCsrPem(newKey())));
      assert.deepEqual(peers, [undefined, `URI:${WEB}`]);
    } finally {
      mtlsCa.close();
    }
  });

  it('aborts when asked', async () => {
    const abort = new AbortController();
    const p = client()(buildCsrPem(newKey()), abort.signal);
    abort.abort();
    const e = await failure(p);
    assert.equal(e.code, 'ca-unreachable');
  });
});

describe('parseControlPlaneAddress', () => {
  it('reads host:port and [v6]:port', () => {
    assert.deepEqual(parseControlPlaneAddress('tsmesh-control-plane.tsmesh-system.svc:15012'), { host: 'tsmesh-control-plane.tsmesh-system.svc', port: 15012 });
    assert.deepEqual(parseControlPlaneAddress('[::1]:15012'), { host: '::1', port: 15012 });
  });
  for (const bad of ['tsmesh-control-plane', 'host:0', 'host:99999', 'https://host:15012', '', 'a b:1', '::1:15012'])
    it(`refuses ${JSON.stringify(bad)}, naming the expected form`, () => {
      assert.throws(() => parseControlPlaneAddress(bad), (e: IdentityError) => e.code === 'bad-address' && /is not host:port/.test(e.message));
    });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter('7'), 7000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});
