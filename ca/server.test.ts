// The CA's HTTP API over real TLS, as the control plane serves it.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Agent, request } from 'undici';
import { TokenFileAuthenticator } from './authn/token-file.js';
import { buildCsrPem } from './csr.js';
import { silentLogger } from '../lib/log.js';
// eslint-disable-next-line no-restricted-imports -- an integration test: the CA's HTTP API as the control plane serves it
import { startControlPlane, type RunningControlPlane } from '../control/plane.js';
import { API, WEB, newKey, newRootCa, opensslVerify } from './testdata/fixtures.js';

const WEB_TOKEN = 'web-token-0123456789abcdef';
const OLD_TOKEN = 'old-token-0123456789abcdef';

describe('CA service: POST /v1/certificates over TLS', () => {
  let plane: RunningControlPlane;
  let agent: Agent;
  let bundle: string;
  let base: string;

  before(async () => {
    const { ca } = await newRootCa();
    bundle = ca.trustBundle.toPem();
    const authenticator = new TokenFileAuthenticator([
      { token: WEB_TOKEN, spiffeId: WEB },
      { token: OLD_TOKEN, spiffeId: WEB, expiresAt: new Date(Date.now() - 1000) },
    ]);
    plane = await startControlPlane({ authority: ca, authenticator, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0 });
    // The client trusts only the mesh root and checks the control plane's DNS name.
    agent = new Agent({ connect: { ca: bundle, servername: 'tsmesh-control-plane.tsmesh-system.svc' } });
    base = `https://127.0.0.1:${plane.caPort}`;
  });
  after(async () => {
    await agent?.close();
    await plane?.close();
  });

  async function post(body: string | object, headers: Record<string, string> = { authorization: `Bearer ${WEB_TOKEN}` }) {
    const res = await request(`${base}/v1/certificates`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, any>) : {}, text };
  }

  it('issues a certificate for the token\'s identity', async () => {
    const r = await post({ csr: buildCsrPem(newKey(), WEB) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.spiffeId, WEB);
    assert.equal(r.json.trustBundle, bundle);
    assert.equal(new X509Certificate(r.json.certChain).subjectAltName, `URI:${WEB}`);
    assert.match(opensslVerify(r.json.certChain, r.json.trustBundle), /: OK/);
    const ttl = new Date(r.json.expiresAt).getTime() - Date.now();
    assert.ok(ttl > 3590_000 && ttl <= 3600_000, `expiresAt ${r.json.expiresAt}`);
  });

  it('accepts a raw PEM body and a CSR without a SAN', async () => {
    const r = await post(buildCsrPem(newKey()));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.spiffeId, WEB);
  });

  it('serves the trust bundle', async () => {
    const res = await request(`${base}/v1/trust-bundle`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), bundle);
  });

  const cases: [string, () => Promise<{ status: number; json: Record<string, any>; headers: Record<string, unknown> }>, number, string, RegExp][] = [
    ['garbage PEM', () => post({ csr: 'not a csr' }), 400, 'malformed-csr', /malformed CSR/],
    ['a body that is not JSON', () => post('{"csr": ', { authorization: `Bearer ${WEB_TOKEN}`, 'content-type': 'application/json' }), 400, 'bad-request', /not valid JSON/],
    ['JSON without "csr"', () => post({ pem: 'x' }), 400, 'bad-request', /"csr"/],
    ['a missing token', () => post({ csr: buildCsrPem(newKey(), WEB) }, {}), 401, 'unauthenticated', /Authorization: Bearer/],
    ['an unknown token', () => post({ csr: buildCsrPem(newKey(), WEB) }, { authorization: 'Bearer nope-nope-nope-nope-nope' }), 401, 'unauthenticated', /unknown token/],
    ['an expired token', () => post({ csr: buildCsrPem(newKey(), WEB) }, { authorization: `Bearer ${OLD_TOKEN}` }), 401, 'unauthenticated', /expired/],
    ['a CSR for another identity', () => post({ csr: buildCsrPem(newKey(), API) }), 403, 'identity-mismatch', /payments/],
    ['an oversized body', () => post({ csr: 'A'.repeat(100 * 1024) }), 413, 'too-large', /larger than/],
    ['a TTL beyond the maximum', () => post({ csr: buildCsrPem(newKey(), WEB), ttlSeconds: 86400 }), 400, 'bad-ttl', /maximum/],
  ];
  for (const [what, send, status, code, message] of cases) {
    it(`answers ${status} ${code} to ${what}`, async () => {
      const r = await send();
      assert.equal(r.status, status);
      assert.equal(r.json.error?.code, code);
      assert.match(r.json.error?.message ?? '', message);
      if (status === 401) assert.match(String(r.headers['www-authenticate']), /^Bearer/);
    });
  }

  it('counts issued certificates, refusals by reason and signing latency on the admin port', async () => {
    const res = await request(`http://127.0.0.1:${plane.adminPort}/metrics`);
    const text = await res.body.text();
    const value = (line: RegExp) => Number(text.match(line)?.[1] ?? NaN);
    assert.ok(value(/^tsmesh_ca_certificates_issued_total (\d+)/m) >= 2);
    assert.equal(value(/^tsmesh_ca_certificate_errors_total\{reason="unauthenticated"\} (\d+)/m), 3);
    assert.equal(value(/^tsmesh_ca_certificate_errors_total\{reason="too-large"\} (\d+)/m), 1);
    assert.equal(value(/^tsmesh_ca_certificate_errors_total\{reason="identity-mismatch"\} (\d+)/m), 1);
    assert.ok(value(/^tsmesh_ca_signing_duration_seconds_count (\d+)/m) >= 2);
    assert.ok(value(/^tsmesh_ca_issuer_expiration_timestamp_seconds (\d+)/m) > Date.now() / 1000);
    const health = await request(`http://127.0.0.1:${plane.adminPort}/healthz`);
    assert.equal(health.statusCode, 200);
    await health.body.dump();
  });
});
