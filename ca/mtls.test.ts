// Certificates from the CA complete a real mutual TLS handshake with Node's tls
// module, each side reading the other's SPIFFE ID; a foreign root is refused.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { CertificateAuthority } from './authority.js';
import { buildCsrPem } from './csr.js';
import { API, WEB, newKey, newRootCa } from './testdata/fixtures.js';

function credentials(ca: CertificateAuthority, id: string) {
  const key = newKey();
  const issued = ca.signWorkloadCsr(buildCsrPem(key, id), id);
  return { id, key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: issued.trustBundlePem };
}

/** The URI SAN of a peer certificate, as the proxy reads it. */
function peerSpiffeId(cert: PeerCertificate): string | undefined {
  return /(?:^|, )URI:(spiffe:\/\/[^,]+)/.exec(cert.subjectaltname ?? '')?.[1];
}

describe('mutual TLS with CA-issued certificates', () => {
  let ca: CertificateAuthority;
  let foreign: CertificateAuthority;
  before(async () => {
    [{ ca }, { ca: foreign }] = await Promise.all([newRootCa(), newRootCa()]);
  });

  type Creds = ReturnType<typeof credentials>;
  /** Each side's view: the peer's SPIFFE ID, or the error that side saw. */
  async function handshake(serverCreds: Creds, clientCreds: Creds): Promise<{ server: string; client: string }> {
    const server = createServer({ ...serverCreds, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['tsmesh'] });
    const serverSide = new Promise<string>((resolve) => {
      server.once('secureConnection', (s: TLSSocket) => {
        const peer = peerSpiffeId(s.getPeerCertificate()) ?? 'no SPIFFE ID';
        s.end(`hello ${peer}`);
        resolve(peer);
      });
      server.once('tlsClientError', (e: Error) => resolve(`error: ${e.message}`));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = connect({
        ...clientCreds,
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        ALPNProtocols: ['tsmesh'],
        // SPIFFE peers are named by URI SAN, not by host name.
        checkServerIdentity: () => undefined,
      });
      // In TLS 1.3 the client may finish before the server has checked its certificate,
      // so the client's view is complete only once the server's greeting arrives.
      const clientSide = await new Promise<string>((resolve) => {
        let peer = 'no SPIFFE ID';
        let greeting = '';
        client.once('secureConnect', () => (peer = peerSpiffeId(client.getPeerCertificate()) ?? peer));
        client.on('data', (d: Buffer) => (greeting += d.toString()));
        client.once('error', (e: Error) => resolve(`error: ${e.message}`));
        client.once('close', () => resolve(greeting === `hello ${clientCreds.id}` ? peer : `error: no greeting (${greeting || 'closed'})`));
      });
      client.destroy();
      return { server: await serverSide, client: clientSide };
    } finally {
      server.close();
    }
  }

  it('completes the handshake and each side reads the other\'s SPIFFE ID', async () => {
    assert.deepEqual(await handshake(credentials(ca, API), credentials(ca, WEB)), { server: WEB, client: API });
  });

  it('the server refuses a client certificate from another root', async () => {
    const r = await handshake(credentials(ca, API), { ...credentials(foreign, WEB), ca: ca.trustBundle.toPem() });
    assert.match(r.server, /^error: /);
    assert.match(r.client, /^error: /);
  });

  it('the client refuses a server certificate from another root', async () => {
    const r = await handshake({ ...credentials(foreign, API), ca: ca.trustBundle.toPem() }, credentials(ca, WEB));
    assert.match(r.client, /^error: .*(unable to verify|self-signed|certificate)/i);
    assert.match(r.server, /^error: /);
  });

  it('trusting both roots accepts both, as during root rotation', async () => {
    const both = ca.trustBundle.with(foreign.trustBundle.toPem()).toPem();
    assert.deepEqual(await handshake({ ...credentials(foreign, API), ca: both }, { ...credentials(ca, WEB), ca: both }), { server: WEB, client: API });
  });
});
