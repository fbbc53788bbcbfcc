import assert from 'node:assert/strict';
import { X509Certificate, sign } from 'node:crypto';
import { CertificateAuthority, CLOCK_SKEW_BACKDATE_SECONDS } from './authority.js';
import { buildCsrPem } from './csr.js';
import { bitString, derToPem, oid, pemToDer, readChildren, readOne, seq } from './der.js';
import { CaError, type CaErrorCode } from './errors.js';
import { OID } from './oids.js';
import { createIntermediateCa, createRootCa, type CaKeyPair } from './root.js';
import { TrustBundle } from './trust-bundle.js';
import { API, TD, WEB, caFromRoot, newKey, newRootCa, openssl, opensslText, opensslVerify } from './testdata/fixtures.js';

const refusedWith = (code: CaErrorCode) => (e: unknown) => e instanceof CaError && e.code === code;

describe('CertificateAuthority: issued certificates follow the X.509-SVID rules', () => {
  let root: CaKeyPair;
  let ca: CertificateAuthority;
  before(async () => ({ root, ca } = await newRootCa()));

  it('issues a certificate that openssl verifies against the root', () => {
    const issued = ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB);
    assert.match(opensslVerify(issued.certificatePem, issued.trustBundlePem), /: OK/);
  });

  it('carries exactly one URI SAN, CA:FALSE, critical digitalSignature, serverAuth+clientAuth (read by openssl)', () => {
    const text = opensslText(ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    assert.match(text, /X509v3 Subject Alternative Name: critical\s*\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/web\s*\n/);
    assert.equal(text.match(/URI:/g)?.length, 1);
    assert.doesNotMatch(text, /DNS:|IP Address:|email:/);
    assert.match(text, /X509v3 Basic Constraints: critical\s*\n\s*CA:FALSE/);
    assert.match(text, /X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    assert.match(text, /X509v3 Extended Key Usage:\s*\n\s*TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  });

  it('reads the same with Node\'s X509Certificate', () => {
    const c = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    assert.equal(c.subjectAltName, `URI:${WEB}`);
    assert.equal(c.ca, false);
    assert.deepEqual([...(c.keyUsage ?? [])].sort(), [OID.serverAuth, OID.clientAuth].sort());
    assert.ok(c.checkIssued(new X509Certificate(root.certPem)));
    assert.ok(c.verify(new X509Certificate(root.certPem).publicKey));
  });

  it('takes the identity from the caller when the CSR names none', () => {
    const c = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey()), API).certificatePem);
    assert.equal(c.subjectAltName, `URI:${API}`);
  });

  it('uses random serials of at least 64 bits', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const c = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
      assert.ok(BigInt('0x' + c.serialNumber) >= 2n ** 64n, `serial ${c.serialNumber} is shorter than 64 bits`);
      serials.add(c.serialNumber);
    }
    assert.equal(serials.size, 50);
  });

  it('backdates NotBefore and lasts 1 hour by default', () => {
    const now = Date.now();
    const c = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    const nb = new Date(c.validFrom).getTime();
    const na = new Date(c.validTo).getTime();
    assert.ok(Math.abs(nb - (now - CLOCK_SKEW_BACKDATE_SECONDS * 1000)) <= 2000, `NotBefore ${c.validFrom}`);
    assert.ok(Math.abs(na - (now + 3600_000)) <= 2000, `NotAfter ${c.validTo}`);
  });

  it('honours a configured TTL and a shorter requested one, and refuses longer or out-of-bounds ones', () => {
    const ca2h = caFromRoot(root, { ttlSeconds: 7200 });
    const now = Date.now();
    const long = new X509Certificate(ca2h.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    assert.ok(Math.abs(new Date(long.validTo).getTime() - (now + 7200_000)) <= 2000);
    const short = new X509Certificate(ca2h.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB, 600).certificatePem);
    assert.ok(Math.abs(new Date(short.validTo).getTime() - (now + 600_000)) <= 2000);
    assert.throws(() => ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB, 7200), refusedWith('bad-ttl'));
    assert.throws(() => ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB, 5), refusedWith('bad-ttl'));
    assert.throws(() => caFromRoot(root, { ttlSeconds: 10 }), refusedWith('bad-ttl'));
    assert.throws(() => caFromRoot(root, { ttlSeconds: 365 * 86400 }), refusedWith('bad-ttl'));
  });

  it('changes the lifetime of certificates issued after setTtlSeconds, refuses a bad one and keeps the last', () => {
    const lifetime = (c: CertificateAuthority): number => {
      const x = new X509Certificate(c.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
      return (new Date(x.validTo).getTime() - new Date(x.validFrom).getTime()) / 1000 - CLOCK_SKEW_BACKDATE_SECONDS;
    };
    const changing = caFromRoot(root, { ttlSeconds: 1800 });
    const before = changing.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB);
    assert.equal(changing.setTtlSeconds(7200), 7200);
    assert.ok(Math.abs(lifetime(changing) - 7200) <= 1, 'the new lifetime applies');
    assert.ok(Math.abs(before.notAfter.getTime() - before.notBefore.getTime() - (1800 + CLOCK_SKEW_BACKDATE_SECONDS) * 1000) <= 1000, 'an issued certificate keeps its own');
    // The lifetime in force is also the maximum a request may ask for.
    assert.ok(changing.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB, 3600));
    assert.throws(() => changing.setTtlSeconds(10), (e: unknown) => refusedWith('bad-ttl')(e) && /10s is out of bounds/.test((e as Error).message));
    assert.equal(changing.ttlSeconds, 7200);
    assert.equal(changing.setTtlSeconds(undefined), 1800);
    assert.ok(Math.abs(lifetime(changing) - 1800) <= 1, 'back to the default given at construction');
    assert.throws(() => changing.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB, 3600), refusedWith('bad-ttl'));
  });

  it('a longer lifetime set at run time still ends at the issuer\'s NotAfter', () => {
    const rootEnd = new Date(new X509Certificate(root.certPem).validTo).getTime();
    const late = caFromRoot(root, { now: () => new Date(rootEnd - 3600_000) });
    late.setTtlSeconds(30 * 86400);
    const c = new X509Certificate(late.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    assert.equal(new Date(c.validTo).getTime(), rootEnd);
  });

  it('never outlives its issuer: NotAfter = min(now + TTL, issuer NotAfter)', () => {
    const rootEnd = new Date(new X509Certificate(root.certPem).validTo).getTime();
    const late = caFromRoot(root, { now: () => new Date(rootEnd - 600_000) });
    const c = new X509Certificate(late.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB).certificatePem);
    assert.equal(new Date(c.validTo).getTime(), rootEnd);
  });

  it('refuses to sign with an expired or not-yet-valid issuer', () => {
    const x = new X509Certificate(root.certPem);
    const expired = caFromRoot(root, { now: () => new Date(new Date(x.validTo).getTime() + 1000) });
    assert.throws(() => expired.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB), (e: unknown) => refusedWith('issuer-not-valid')(e) && /expired/.test((e as Error).message));
    const early = caFromRoot(root, { now: () => new Date(new Date(x.validFrom).getTime() - 86400_000) });
    assert.throws(() => early.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB), refusedWith('issuer-not-valid'));
  });

  it('refuses a CSR that names another identity than the caller', () => {
    assert.throws(() => ca.signWorkloadCsr(buildCsrPem(newKey(), API), WEB), (e: unknown) => refusedWith('identity-mismatch')(e) && (e as Error).message.includes(API));
  });

  it('refuses an identity outside its trust domain', () => {
    assert.throws(() => ca.signWorkloadCsr(buildCsrPem(newKey()), 'spiffe://other.domain/ns/a/sa/b'), refusedWith('identity-mismatch'));
  });

  it('refuses garbage PEM, non-PEM and truncated DER', () => {
    assert.throws(() => ca.signWorkloadCsr('hello', WEB), refusedWith('malformed-csr'));
    assert.throws(() => ca.signWorkloadCsr('-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n', WEB), refusedWith('malformed-csr'));
    const der = pemToDer(buildCsrPem(newKey(), WEB), 'CERTIFICATE REQUEST');
    assert.throws(() => ca.signWorkloadCsr(derToPem(der.subarray(0, der.length - 20), 'CERTIFICATE REQUEST'), WEB), refusedWith('malformed-csr'));
    assert.throws(() => ca.signWorkloadCsr(derToPem(Buffer.from('3003020100', 'hex'), 'CERTIFICATE REQUEST'), WEB), refusedWith('malformed-csr'));
  });

  it('refuses a CSR whose signature does not match its key', () => {
    // The request info carries key A but is signed by key B.
    const keyA = newKey();
    const keyB = newKey();
    const genuine = pemToDer(buildCsrPem(keyA, WEB), 'CERTIFICATE REQUEST');
    const cri = readChildren(readOne(genuine, 0x30, 'csr').value)[0]!.raw;
    const forged = derToPem(seq(cri, seq(oid(OID.ecdsaWithSHA256)), bitString(sign('sha256', cri, keyB))), 'CERTIFICATE REQUEST');
    const verifyWithOpenssl = (pem: string) => openssl((d) => ['req', '-in', `${d}/r.pem`, '-verify', '-noout'], { 'r.pem': pem });
    assert.match(verifyWithOpenssl(buildCsrPem(keyA, WEB)), /verify OK/);
    assert.match(verifyWithOpenssl(forged), /verify failure/, 'openssl agrees the forged request is invalid');
    assert.throws(() => ca.signWorkloadCsr(forged, WEB), refusedWith('csr-signature'));
  });

  it('refuses keys that are not P-256/P-384 ECDSA or RSA >= 2048', () => {
    assert.throws(() => ca.signWorkloadCsr(buildCsrPem(newKey('P-521'), WEB), WEB), refusedWith('weak-key'));
  });

  it('issues for P-384 keys', () => {
    const c = new X509Certificate(ca.signWorkloadCsr(buildCsrPem(newKey('P-384'), WEB), WEB).certificatePem);
    assert.equal(c.subjectAltName, `URI:${WEB}`);
  });
});

describe('CertificateAuthority: intermediates and several roots', () => {
  it('signs with an intermediate and returns the chain; openssl verifies leaf -> intermediate -> root', async () => {
    const root = await createRootCa(TD);
    const inter = await createIntermediateCa(root, TD);
    const ca = new CertificateAuthority({ trustDomain: TD, issuerCertPem: inter.certPem, issuerKeyPem: inter.keyPem, trustBundle: new TrustBundle(root.certPem) });
    const issued = ca.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB);
    assert.equal(issued.trustBundlePem, new X509Certificate(root.certPem).toString());
    const chain = issued.certChainPem.match(/BEGIN CERTIFICATE/g) ?? [];
    assert.equal(chain.length, 2);
    assert.match(opensslVerify(issued.certificatePem, root.certPem, inter.certPem), /: OK/);
    assert.throws(() => opensslVerify(issued.certificatePem, root.certPem));
    assert.ok(ca.trustBundle.anchors([new X509Certificate(issued.certificatePem), new X509Certificate(inter.certPem)]));
  });

  it('refuses an issuer that does not chain to the trust bundle', async () => {
    const [a, b] = await Promise.all([createRootCa(TD), createRootCa(TD)]);
    assert.throws(
      () => new CertificateAuthority({ trustDomain: TD, issuerCertPem: a.certPem, issuerKeyPem: a.keyPem, trustBundle: new TrustBundle(b.certPem) }),
      /does not chain/,
    );
  });

  it('a bundle of two roots verifies certificates from either, so a root can rotate', async () => {
    const [oldRoot, newRoot] = await Promise.all([createRootCa(TD), createRootCa(TD)]);
    const bundle = new TrustBundle(oldRoot.certPem).with(newRoot.certPem);
    assert.equal(bundle.roots.length, 2);
    const oldCa = caFromRoot(oldRoot, { trustBundle: bundle });
    const newCa = caFromRoot(newRoot, { trustBundle: bundle });
    const fromOld = oldCa.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB);
    const fromNew = newCa.signWorkloadCsr(buildCsrPem(newKey(), WEB), WEB);
    assert.equal(fromNew.trustBundlePem, bundle.toPem());
    assert.match(opensslVerify(fromOld.certificatePem, bundle.toPem()), /: OK/);
    assert.match(opensslVerify(fromNew.certificatePem, bundle.toPem()), /: OK/);
    const retired = bundle.without(new X509Certificate(oldRoot.certPem).fingerprint256);
    assert.equal(retired.roots.length, 1);
    assert.throws(() => opensslVerify(fromOld.certificatePem, retired.toPem()));
    assert.ok(!retired.anchors([new X509Certificate(fromOld.certificatePem)]));
    assert.ok(retired.anchors([new X509Certificate(fromNew.certificatePem)]));
  });
});
