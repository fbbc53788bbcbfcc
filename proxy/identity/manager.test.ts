// The identity manager's retry and rotation logic on virtual time, against a
// real CertificateAuthority called as a function (no network here; see
// identity.test.ts for the real control plane).
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { Registry } from 'prom-client';
import type { CertificateAuthority } from '../../ca/authority.js';
import { buildCsrPem, parseCsrPem } from '../../ca/csr.js';
import type { CertificateResponse } from '../../ca/server.js';
import { createRootCa } from '../../ca/root.js';
import { TrustBundle } from '../../ca/trust-bundle.js';
import { API, TD, WEB, caFromRoot, newKey } from '../../ca/testdata/fixtures.js';
import { createLogger } from '../../lib/log.js';
import { IdentityError } from './errors.js';
import { IdentityManager, type IdentityManagerOptions } from './manager.js';
import type { WorkloadCredentials } from './types.js';
import { ManualScheduler, settle } from '../../lib/testdata/manual-scheduler.js';

const HALF_HOUR = 1_800_000;

function responseOf(ca: CertificateAuthority, csr: string, spiffeId = WEB): CertificateResponse {
  const i = ca.signWorkloadCsr(csr, spiffeId);
  return {
    spiffeId: i.spiffeId,
    serialNumber: i.serialNumber,
    certChain: i.certChainPem,
    trustBundle: i.trustBundlePem,
    notBefore: i.notBefore.toISOString(),
    expiresAt: i.notAfter.toISOString(),
  };
}

const unreachable = () => new IdentityError('ca-unreachable', 'cannot reach the CA: connect ECONNREFUSED 127.0.0.1:15012');
const refused = (status: number, caCode: string, retryAfterMs?: number) =>
  new IdentityError('ca-refused', `the CA refused the certificate request: ${status} ${caCode}: no`, {
    status,
    caCode,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });

describe('IdentityManager (virtual time)', () => {
  let sched: ManualScheduler;
  let ca: CertificateAuthority;
  let registry: Registry;
  let logs: { level: string; msg: string; [k: string]: unknown }[];
  let calls: { csr: string; signal: AbortSignal | undefined }[];
  /** What the CA does with the next request: answer, or throw. */
  let respond: (csr: string) => CertificateResponse | Promise<CertificateResponse>;
  let manager: IdentityManager;

  const make = (extra: Partial<IdentityManagerOptions> = {}) =>
    new IdentityManager({
      requestCertificate: async (csr, signal) => {
        calls.push({ csr, signal });
        return respond(csr);
      },
      registry,
      log: createLogger('identity', 'debug', (line) => logs.push(JSON.parse(line) as (typeof logs)[number])),
      spiffeId: WEB,
      scheduler: sched,
      random: () => 0.5,
      ...extra,
    });

  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> => {
    const m = await registry.getSingleMetric(name)?.get();
    return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
  };

  before(async () => {
    const root = await createRootCa(TD);
    ca = caFromRoot(root, { now: () => new Date(sched.now()) });
  });

  beforeEach(() => {
    // On a whole second, as certificates carry no milliseconds.
    sched = new ManualScheduler(Math.floor(Date.now() / 1000) * 1000);
    registry = new Registry();
    logs = [];
    calls = [];
    respond = (csr) => responseOf(ca, csr);
    manager = make();
  });
  afterEach(() => manager.stop());

  it('obtains the first certificate for a fresh P-256 key, then schedules renewal at half-life', async () => {
    const seen: WorkloadCredentials[] = [];
    manager.onChange((c) => seen.push(c));
    assert.equal(manager.current(), undefined);
    assert.match(manager.notReadyReason() ?? '', /no certificate from the CA yet/);

    const creds = await manager.start();
    assert.equal(calls.length, 1);
    const csr = parseCsrPem(calls[0]!.csr);
    assert.deepEqual(csr.uris, [WEB]);
    assert.equal(csr.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

    assert.equal(creds.spiffeId, WEB);
    assert.equal(manager.current(), creds);
    assert.deepEqual(seen, [creds]);
    assert.equal(manager.notReadyReason(), undefined);
    assert.ok(new X509Certificate(creds.certChainPem).checkPrivateKey(createPrivateKey(creds.keyPem)));
    assert.equal(creds.trustBundlePem, ca.trustBundle.toPem());

    // A 1h certificate (backdated 1 minute for clock skew): its life counts from its arrival, so half of it is 30 minutes from now.
    assert.deepEqual(sched.pending(), [HALF_HOUR]);
    assert.equal(await metric('tsmesh_identity_cert_expiration_timestamp_seconds'), creds.notAfter.getTime() / 1000);
    assert.equal(await metric('tsmesh_identity_cert_renewals_total', { result: 'success' }), 1);
    assert.equal(logs.find((l) => l.msg === 'obtained workload certificate')?.spiffeId, WEB);
  });

  it('rotates with a new key each time and tells every listener', async () => {
    const seen: WorkloadCredentials[] = [];
    manager.onChange((c) => seen.push(c));
    const first = await manager.start();

    for (let round = 1; round <= 3; round++) {
      sched.runNext();
      await settle();
      assert.equal(calls.length, round + 1);
      assert.equal(seen.length, round + 1);
    }
    const keys = new Set(seen.map((c) => c.keyPem));
    const spkis = new Set(calls.map((c) => parseCsrPem(c.csr).spki.toString('hex')));
    assert.equal(keys.size, 4);
    assert.equal(spkis.size, 4);
    const last = manager.current()!;
    assert.notEqual(last.certChainPem, first.certChainPem);
    assert.ok(last.notAfter > first.notAfter);
    assert.equal(sched.pending().length, 1, 'exactly one renewal pending');
    assert.equal(await metric('tsmesh_identity_cert_renewals_total', { result: 'success' }), 4);
    assert.equal(await metric('tsmesh_identity_cert_expiration_timestamp_seconds'), last.notAfter.getTime() / 1000);
  });

  it('spreads renewals over 40%..60% of the lifetime', async () => {
    for (const [r, fraction] of [[0, 0.4], [1, 0.6]] as const) {
      manager.stop();
      registry = new Registry();
      manager = make({ random: () => r });
      await manager.start();
      const life = 3_600_000; // counted from arrival: the backdated minute is not part of it
      assert.deepEqual(sched.pending(), [Math.round(life * fraction)]);
    }
  });

  it('retries the first request with exponential backoff, capped, and stays not ready meanwhile', async () => {
    manager.stop();
    registry = new Registry();
    manager = make({ random: () => 0 });
    respond = () => {
      throw unreachable();
    };
    void manager.start();
    await settle();
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      delays.push(sched.pending()[0]!);
      assert.equal(manager.current(), undefined);
      assert.match(manager.notReadyReason() ?? '', /no certificate from the CA yet \(last CA request: cannot reach the CA/);
      sched.runNext();
      await settle();
    }
    assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
    assert.equal(await metric('tsmesh_identity_cert_renewals_total', { result: 'failure' }), 11);

    respond = (csr) => responseOf(ca, csr);
    sched.runNext();
    const creds = await manager.ready;
    assert.equal(creds.spiffeId, WEB);
    assert.equal(manager.notReadyReason(), undefined);

    const failures = logs.filter((l) => l.msg === 'cannot get a certificate from the CA; retrying');
    assert.equal(failures.length, 11);
    assert.ok(failures.every((l) => l.level === 'warn' && l.code === 'ca-unreachable'));
    assert.deepEqual(failures.slice(0, 3).map((l) => l.retryInMs), [200, 400, 800]);
  });

  it('logs a refusal that needs an operator (403) as an error with the CA code, and keeps retrying', async () => {
    respond = () => {
      throw refused(403, 'identity-mismatch');
    };
    void manager.start();
    await settle();
    sched.runNext();
    await settle();
    const [a, b] = logs.filter((l) => l.msg.startsWith('cannot get a certificate'));
    assert.equal(a?.level, 'error');
    assert.equal(a?.caCode, 'identity-mismatch');
    assert.equal(a?.status, 403);
    assert.equal(b?.attempt, 2);
    assert.equal(sched.pending().length, 1);
  });

  it('logs 401, 429 and 503 as warnings and honours Retry-After', async () => {
    const answers = [refused(401, 'unauthenticated'), refused(429, 'rate-limited', 7000), refused(503, 'authenticator-unavailable')];
    respond = () => {
      throw answers.shift() ?? new Error('unexpected');
    };
    void manager.start();
    await settle();
    assert.ok(sched.pending()[0]! <= 200);
    sched.runNext();
    await settle();
    assert.deepEqual(sched.pending(), [7000]);
    sched.runNext();
    await settle();
    const levels = logs.filter((l) => l.msg.startsWith('cannot get')).map((l) => `${l.level} ${String(l.status)}`);
    assert.deepEqual(levels, ['warn 401', 'warn 429', 'warn 503']);
  });

  it('refuses an answer that does not certify its key or its identity, and retries', async () => {
    const otherKeyCsr = buildCsrPem(newKey(), WEB);
    // The CA would refuse to sign API for a CSR naming WEB, so this answer is forged from the CSR's key.
    const forApi = (csr: string): CertificateResponse => {
      const i = ca.issue(parseCsrPem(csr).spki, { spiffeId: API });
      return { ...responseOf(ca, csr), spiffeId: API, certChain: i.certChainPem };
    };
    const answers: ((csr: string) => CertificateResponse)[] = [() => responseOf(ca, otherKeyCsr), forApi, (csr) => responseOf(ca, csr)];
    respond = (csr) => answers.shift()!(csr);
    void manager.start();
    await settle();
    sched.runNext();
    await settle();
    sched.runNext();
    await manager.ready;
    const errors = logs.filter((l) => l.level === 'error');
    assert.equal(errors.length, 2);
    assert.match(String(errors[0]!.error), /not for the key in the request/);
    assert.match(String(errors[1]!.error), /this proxy runs as spiffe:\/\/cluster.local\/ns\/default\/sa\/web/);
    assert.ok(errors.every((l) => l.code === 'bad-response'));
  });

  it('keeps serving the current certificate while renewal fails, and reports not ready once it expires', async () => {
    const first = await manager.start();
    respond = () => {
      throw unreachable();
    };
    sched.runNext(); // the renewal at half-life fails
    await settle();
    assert.equal(manager.current(), first);
    assert.equal(manager.notReadyReason(), undefined);
    const warning = logs.find((l) => l.msg === 'certificate renewal failed; retrying');
    assert.equal(warning?.currentNotAfter, first.notAfter.toISOString());

    // CA down for the rest of the certificate's life: retries every 30s at most.
    while (sched.now() < first.notAfter.getTime()) {
      assert.ok(sched.pending()[0]! <= 30_000);
      sched.runNext();
      await settle();
    }
    assert.match(manager.notReadyReason() ?? '', /the certificate expired at .*last CA request: cannot reach the CA/);

    respond = (csr) => responseOf(ca, csr);
    sched.runNext();
    await settle();
    assert.notEqual(manager.current(), first);
    assert.equal(manager.notReadyReason(), undefined);
  });

  it("warns when this machine's clock is outside the new certificate's validity, and does not renew in a loop", async () => {
    manager.stop();
    registry = new Registry();
    const realTimeCa = caFromRoot((await createRootCa(TD)));
    respond = (csr) => responseOf(realTimeCa, csr);
    sched = new ManualScheduler(Math.floor(Date.now() / 1000) * 1000 + 2 * 3_600_000);
    manager = make();
    const creds = await manager.start();
    const warning = logs.find((l) => l.level === 'warn');
    assert.match(warning?.msg ?? '', /clock is outside the new certificate's validity/);
    assert.equal(warning?.notAfter, creds.notAfter.toISOString());
    assert.deepEqual(sched.pending(), [Math.round(0.05 * (creds.notAfter.getTime() - creds.notBefore.getTime()))]);
    assert.match(manager.notReadyReason() ?? '', /the certificate expired at/);
  });

  it('passes on the trust bundle of each answer, so a new root reaches the proxy', async () => {
    await manager.start();
    const newRoot = await createRootCa(TD);
    const bothRoots = new TrustBundle(ca.trustBundle.toPem()).with(newRoot.certPem);
    const rotated = caFromRoot(newRoot, { trustBundle: bothRoots, now: () => new Date(sched.now()) });
    respond = (csr) => responseOf(rotated, csr);
    sched.runNext();
    await settle();
    const creds = manager.current()!;
    assert.equal(new TrustBundle(creds.trustBundlePem).roots.length, 2);
    assert.equal(creds.trustBundlePem, bothRoots.toPem());
  });

  it('keeps notifying when one listener throws', async () => {
    const seen: string[] = [];
    manager.onChange(() => {
      throw new Error('boom');
    });
    manager.onChange((c) => seen.push(c.spiffeId));
    await manager.start();
    assert.deepEqual(seen, [WEB]);
    assert.ok(logs.some((l) => l.level === 'error' && /listener failed/.test(l.msg)));
  });

  it('unsubscribes a listener', async () => {
    let count = 0;
    const off = manager.onChange(() => count++);
    await manager.start();
    off();
    sched.runNext();
    await settle();
    assert.equal(count, 1);
  });

  it('stop() cancels the pending renewal', async () => {
    await manager.start();
    assert.equal(sched.pending().length, 1);
    manager.stop();
    assert.deepEqual(sched.pending(), []);
    assert.ok(manager.current(), 'credentials stay readable after stop');
  });

  it('stop() aborts a request in flight, ignores its late answer and rejects ready', async () => {
    let answer!: (r: CertificateResponse) => void;
    const late = new Promise<CertificateResponse>((r) => (answer = r));
    respond = () => late;
    const ready = manager.start();
    await settle();
    manager.stop();
    assert.equal(calls[0]!.signal?.aborted, true);
    answer(responseOf(ca, calls[0]!.csr));
    await settle();
    assert.equal(manager.current(), undefined);
    assert.deepEqual(sched.pending(), []);
    await assert.rejects(ready, /stopped before the CA issued a certificate/);
  });

  it('start() twice makes one request', async () => {
    const a = manager.start();
    const b = manager.start();
    assert.equal(a, b);
    await a;
    assert.equal(calls.length, 1);
  });
});
