// `tsmesh ca init` and `tsmesh ca issue` as an operator runs them, checked with openssl.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');

function tsmesh(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function openssl(...args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe('tsmesh ca', function () {
  this.timeout(30_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tsmesh-cli-ca-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('init then issue gives a certificate openssl accepts, with the SVID fields, valid 1 hour', () => {
    const init = tsmesh('ca', 'init', '--out', join(dir, 'ca'));
    assert.equal(init.code, 0, init.err);
    assert.equal(statSync(join(dir, 'ca', 'root-key.pem')).mode & 0o777, 0o600);
    const rootText = openssl('x509', '-in', join(dir, 'ca', 'root-cert.pem'), '-noout', '-text');
    assert.match(rootText, /Basic Constraints: critical\s*\n\s*CA:TRUE/);
    assert.match(rootText, /Key Usage: critical\s*\n\s*Certificate Sign, CRL Sign/);
    assert.match(rootText, /URI:spiffe:\/\/cluster\.local\s*\n/);

    const issue = tsmesh('ca', 'issue', '--ca', join(dir, 'ca'), '--spiffe-id', 'spiffe://cluster.local/ns/default/sa/web', '--out', join(dir, 'web'));
    assert.equal(issue.code, 0, issue.err);
    const cert = join(dir, 'web', 'cert.pem');
    assert.match(openssl('verify', '-CAfile', join(dir, 'web', 'bundle.pem'), cert), /cert\.pem: OK/);
    const text = openssl('x509', '-in', cert, '-noout', '-text');
    assert.equal(text.match(/URI:/g)?.length, 1);
    assert.match(text, /URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/web/);
    assert.match(text, /Basic Constraints: critical\s*\n\s*CA:FALSE/);
    assert.match(text, /Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    const dates = openssl('x509', '-in', cert, '-noout', '-enddate');
    const lifetime = new Date(dates.replace('notAfter=', '').trim()).getTime() - Date.now();
    assert.ok(lifetime > 3590_000 && lifetime <= 3600_000, dates);
    // The key matches the certificate.
    const certKey = openssl('x509', '-in', cert, '-noout', '-pubkey');
    const key = openssl('pkey', '-in', join(dir, 'web', 'key.pem'), '-pubout');
    assert.equal(certKey, key);
  });

  it('honours --ttl', () => {
    const r = tsmesh('ca', 'issue', '--ca', join(dir, 'ca'), '--spiffe-id', 'spiffe://cluster.local/ns/a/sa/b', '--ttl', '10m', '--out', join(dir, 'short'));
    assert.equal(r.code, 0, r.err);
    const end = openssl('x509', '-in', join(dir, 'short', 'cert.pem'), '-noout', '-enddate');
    const lifetime = new Date(end.replace('notAfter=', '').trim()).getTime() - Date.now();
    assert.ok(lifetime > 590_000 && lifetime <= 600_000, end);
  });

  it('refuses to overwrite a root', () => {
    const r = tsmesh('ca', 'init', '--out', join(dir, 'ca'));
    assert.equal(r.code, 1);
    assert.match(r.err, /already exists/);
  });

  it('explains bad input: a missing flag, an invalid SPIFFE ID, a unit-less TTL', () => {
    const missing = tsmesh('ca', 'issue', '--ca', join(dir, 'ca'), '--out', join(dir, 'x'));
    assert.equal(missing.code, 2);
    assert.match(missing.err, /--spiffe-id is required/);
    const bad = tsmesh('ca', 'issue', '--ca', join(dir, 'ca'), '--spiffe-id', 'spiffe://cluster.local/ns//web', '--out', join(dir, 'x'));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /empty segment.*rule: path-empty-segment/);
    const ttl = tsmesh('ca', 'issue', '--ca', join(dir, 'ca'), '--spiffe-id', 'spiffe://cluster.local/ns/a/sa/b', '--ttl', '3600', '--out', join(dir, 'x'));
    assert.equal(ttl.code, 1);
    assert.match(ttl.err, /--ttl "3600" is not a duration/);
    const unknown = tsmesh('frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /unknown command "frobnicate"/);
  });
});
