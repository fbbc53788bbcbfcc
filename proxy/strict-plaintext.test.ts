// Plain text to the inbound port of a STRICT sidecar on loopback: plain HTTP
// gets a 403 a person can read (what the port needs and what to do), anything
// else is closed without a byte, and both are counted as before.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import { connect } from 'node:net';
import { request } from 'undici';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { Sidecar } from './sidecar.js';
import { startApiSidecar, startOkApp } from './testdata/shop.js';

/** Writes `bytes` on a new connection; what comes back before the sidecar closes it. */
async function exchange(port: number, bytes: string | Buffer): Promise<string> {
  const s = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let error: string | undefined;
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
  s.write(bytes);
  const timer = setTimeout(() => s.destroy(), 5000);
  await once(s, 'close');
  clearTimeout(timer);
  const answer = Buffer.concat(chunks).toString('latin1');
  assert.equal(error, undefined, `the connection failed (${error}) after ${JSON.stringify(answer.slice(0, 80))}`);
  return answer;
}

describe('a STRICT inbound port and plain text', () => {
  let app: HttpServer;
  let b: Sidecar;

  before(async () => {
    const { ca } = await newRootCa();
    let appPort: number;
    ({ server: app, port: appPort } = await startOkApp());
    b = await startApiSidecar(ca, appPort);
  });
  after(async () => {
    await b?.drain(0);
    app?.close();
  });

  const plaintextRefusals = async (): Promise<number> =>
    (await b.metrics.connectionsRefused.get()).values.find((v) => v.labels.direction === 'inbound' && v.labels.reason === 'plaintext')?.value ?? 0;

  it('answers plain HTTP with 403, x-tsmesh-error: mtls-required and what to do, and counts it', async () => {
    const before = await plaintextRefusals();
    const res = await request(`http://127.0.0.1:${b.inboundPort}/orders`, { headers: { host: 'api.shop' } });
    const body = await res.body.text();
    assert.equal(res.statusCode, 403);
    assert.equal(res.headers['x-tsmesh-error'], 'mtls-required');
    assert.equal(res.headers['connection'], 'close');
    assert.match(body, /accepts only mutual TLS from a meshed client \(mtlsMode STRICT\)/);
    assert.match(body, /Mesh the client .* or set mtlsMode PERMISSIVE/);
    assert.equal((await plaintextRefusals()) - before, 1);
  });

  it('lets the client read the 403 though it sent a body the proxy never wanted (no reset)', async () => {
    const answer = await exchange(b.inboundPort, `POST /orders HTTP/1.1\r\nhost: api.shop\r\ncontent-length: 200000\r\n\r\n${'x'.repeat(200_000)}`);
    assert.match(answer, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(answer, /\r\nx-tsmesh-error: mtls-required\r\n/);
  });

  it('closes plain text that is not HTTP without a byte, and counts it', async () => {
    const before = await plaintextRefusals();
    assert.equal(await exchange(b.inboundPort, 'HELLO mysql-ish\r\n'), '');
    assert.equal((await plaintextRefusals()) - before, 1);
  });
});
