// The proxy's identity end to end: createIdentity against a real control plane
// (CA, TLS, token file authenticator) on loopback, with real files for the
// token and the trust bundle.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createSecureContext, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import type { CertificateAuthority } from '../../ca/authority.js';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import { WEB, newRootCa } from '../../ca/testdata/fixtures.js';
import { createLogger, silentLogger, type Logger } from '../../lib/log.js';
// eslint-disable-next-line no-restricted-imports -- an integration test: the CA client against the control plane's CA over TLS
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
import { secureContextOptions } from './credentials.js';
import { createIdentity, type IdentitySettings } from './identity.js';
import type { WorkloadCredentials } from './types.js';
import type { IdentityManager } from './manager.js';
import { freePort } from '../../lib/ports.js';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';

const TOKEN = 'web-token-0123456789abcdef';
const FAST = { backoff: { minMs: 20, maxMs: 100 } };

describe('proxy identity against a real control plane', () => {
  let ca: CertificateAuthority;
  let plane: RunningControlPlane | undefined;
  let dir: string;
  let tokenPath: string;
  let trustBundlePath: string;
  let manager: IdentityManager | undefined;

  const startPlane = async (port = 0) => {
    plane = await startControlPlane({
      authority: ca,
      authenticator: new TokenFileAuthenticator([{ token: TOKEN, spiffeId: WEB }]),
      log: silentLogger,
      host: '127.0.0.1',
      port,
      adminPort: 0,
    });
    return plane;
  };
  const identity = (port: number, extra: Partial<IdentitySettings> = {}) => {
    manager = createIdentity({
      controlPlaneAddress: `127.0.0.1:${port}`,
      tokenPath,
      trustBundlePath,
      spiffeId: WEB,
      registry: new Registry(),
      log: silentLogger,
      tuning: FAST,
      ...extra,
    });
    return manager;
  };
  const capture = () => {
    const logs: { level: string; msg: string; code?: string; caCode?: string }[] = [];
    const log: Logger = createLogger('identity', 'debug', (line) => logs.push(JSON.parse(line) as (typeof logs)[number]));
    return { logs, log };
  };
  const until = async (what: string, check: () => boolean, ms = 5000) => {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  before(async () => {
    ({ ca } = await newRootCa());
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-identity-'));
    tokenPath = join(dir, 'token');
    trustBundlePath = join(dir, 'root-cert.pem');
  });
  beforeEach(() => {
    writeFileSync(tokenPath, TOKEN);
    writeFileSync(trustBundlePath, ca.trustBundle.toPem());
  });
  afterEach(async () => {
    manager?.stop();
    manager = undefined;
    await plane?.close();
    plane = undefined;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('obtains a certificate for its own key and SPIFFE ID, usable for mutual TLS', async () => {
    const { caPort } = await startPlane();
    const registry = new Registry();
    const creds = await identity(caPort, { registry }).start();
    assert.equal(creds.spiffeId, WEB);
    const leaf = new X509Certificate(creds.certChainPem);
    assert.equal(leaf.subjectAltName, `URI:${WEB}`);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(creds.keyPem)));
    assert.equal(creds.trustBundlePem, ca.trustBundle.toPem());
    assert.equal(manager!.notReadyReason(), undefined);

    // Both ends of a TLS connection with these credentials: each verifies the other.
    const server = createTlsServer({ ...secureContextOptions(creds), requestCert: true, rejectUnauthorized: true }, (s) => s.end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const peer = await handshake((server.address() as AddressInfo).port, creds);
      assert.equal(peer.subjectaltname, `URI:${WEB}`);
    } finally {
      server.close();
    }

    const text = await registry.metrics();
    assert.match(text, new RegExp(`^tsmesh_identity_cert_expiration_timestamp_seconds ${creds.notAfter.getTime() / 1000}$`, 'm'));
    assert.match(text, /^tsmesh_identity_cert_renewals_total\{result="success"\} 1$/m);
  });

  it('rotates to a new certificate with a new key, hot-swapped into a TLS server without dropping its connections', async () => {
    const { caPort } = await startPlane();
    const sched = new ManualScheduler(Date.now());
    const first = await identity(caPort, { tuning: { ...FAST, scheduler: sched } }).start();

    const server = createTlsServer({ ...secureContextOptions(first), requestCert: true, rejectUnauthorized: true }, (s) => s.on('data', (d) => s.write(d)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const held = connect({ ...secureContextOptions(first), host: '127.0.0.1', port, checkServerIdentity: () => undefined });
    await once(held, 'secureConnect');
    try {
      const rotated = new Promise<WorkloadCredentials>((resolve) => manager!.onChange(resolve));
      manager!.onChange((c) => server.setSecureContext(secureContextOptions(c)));
      // Renewal is due at 50% +-10% of the life left when the certificate arrived (the manager's clock
      // then); not of the validity, whose notBefore the CA backdates a minute for clock skew.
      const arrived = sched.now();
      const life = first.notAfter.getTime() - arrived;
      const due = sched.runNext()!;
      assert.ok(due >= 0.4 * life - 1 && due <= 0.6 * life + 1, `renewal ${due} ms after arrival, of ${life} ms of life left then`);
      const second = await rotated;

      assert.notEqual(second.keyPem, first.keyPem);
      const [a, b] = [new X509Certificate(first.certChainPem), new X509Certificate(second.certChainPem)];
      assert.notEqual(a.serialNumber, b.serialNumber);
      assert.notEqual(a.publicKey.export({ type: 'spki', format: 'pem' }), b.publicKey.export({ type: 'spki', format: 'pem' }));
      assert.equal(b.subjectAltName, `URI:${WEB}`);
      assert.equal(manager!.current(), second);

      // New connections see the new certificate; the old one still carries bytes.
      assert.equal((await handshake(port, second)).serialNumber, b.serialNumber);
      held.write('still here');
      const [echo] = (await once(held, 'data')) as [Buffer];
      assert.equal(echo.toString(), 'still here');
      assert.equal(held.getPeerCertificate().serialNumber, a.serialNumber);
    } finally {
      held.destroy();
      server.close();
    }
  });

  it('retries while the CA is down at start, and gets its certificate once the CA comes up', async () => {
    const port = await freePort();
    const { logs, log } = capture();
    const ready = identity(port, { log }).start();
    await until('three failed attempts', () => logs.filter((l) => l.code === 'ca-unreachable').length >= 3);
    assert.equal(manager!.current(), undefined);
    assert.match(manager!.notReadyReason() ?? '', /ECONNREFUSED/);
    assert.ok(logs.every((l) => l.level === 'warn'));

    await startPlane(port);
    const creds = await ready;
    assert.equal(creds.spiffeId, WEB);
    assert.equal(manager!.notReadyReason(), undefined);
  });

  it('keeps retrying, not ready, with a token the CA refuses; a rotated token file lets it in', async () => {
    const { caPort } = await startPlane();
    writeFileSync(tokenPath, 'revoked-token-0123456789abcdef');
    const { logs, log } = capture();
    const ready = identity(caPort, { log }).start();
    await until('three refusals', () => logs.filter((l) => l.caCode === 'unauthenticated').length >= 3);
    assert.equal(manager!.current(), undefined);
    assert.match(manager!.notReadyReason() ?? '', /401 unauthenticated: unknown token/);

    writeFileSync(tokenPath, TOKEN);
    assert.equal((await ready).spiffeId, WEB);
  });

  it('says which file is missing when there is no trust bundle to verify the CA with', async () => {
    const { caPort } = await startPlane();
    rmSync(trustBundlePath);
    const { logs, log } = capture();
    const ready = identity(caPort, { log }).start();
    await until('an error log', () => logs.some((l) => l.code === 'trust-bundle-unreadable'));
    const entry = logs.find((l) => l.code === 'trust-bundle-unreadable')!;
    assert.equal(entry.level, 'error');
    assert.match(JSON.stringify(entry), /root-cert.pem is missing or holds no PEM certificate; mount the ConfigMap tsmesh-trust-bundle/);

    writeFileSync(trustBundlePath, ca.trustBundle.toPem());
    assert.equal((await ready).spiffeId, WEB);
  });

  it('verifies the CA with the roots of its last answer when the bundle file disappears later', async () => {
    const { caPort } = await startPlane();
    const sched = new ManualScheduler(Date.now());
    await identity(caPort, { tuning: { ...FAST, scheduler: sched } }).start();
    rmSync(trustBundlePath);
    const rotated = new Promise<WorkloadCredentials>((resolve) => manager!.onChange(resolve));
    sched.runNext();
    assert.equal((await rotated).spiffeId, WEB);
  });
});

/** Connects with `creds` as the client certificate; resolves with the server's certificate. */
async function handshake(port: number, creds: WorkloadCredentials) {
  const socket: TLSSocket = connect({
    host: '127.0.0.1',
    port,
    secureContext: createSecureContext(secureContextOptions(creds)),
    // Peers are checked by SPIFFE ID, not hostname: the data path does that itself.
    checkServerIdentity: () => undefined,
  });
  try {
    await once(socket, 'secureConnect');
    assert.equal(socket.authorized, true, String(socket.authorizationError));
    return socket.getPeerCertificate();
  } finally {
    socket.destroy();
  }
}
