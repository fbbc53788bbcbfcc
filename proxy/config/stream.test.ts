// The discovery stream's reconnects on virtual time: the reconnect timers run
// on a ManualScheduler, the connections are real (mTLS to a real control
// plane on loopback, or a refused port while it is down).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertificateAuthority } from '../../ca/authority.js';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import { newRootCa } from '../../ca/testdata/fixtures.js';
// eslint-disable-next-line no-restricted-imports -- an integration test: the config stream client against the control plane's server
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
// eslint-disable-next-line no-restricted-imports -- the mesh the control plane streams from
import { FileMeshSource } from '../../control/sources/file.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../../lib/backoff.js';
import { silentLogger } from '../../lib/log.js';
import { freePort } from '../../lib/ports.js';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { issueCredentials } from '../testdata/mesh.js';
import { STREAM_BACKOFF, STREAM_STABLE_MS, StreamConfigSource } from './stream.js';

const MESH = `apiVersion: tsmesh.io/v1alpha1
kind: Mesh
services:
  - name: api
    namespace: shop
    clusterIPs: [10.96.0.10]
    ports: [{ port: 80, targetPort: 8080 }]
    endpoints: [{ address: 10.244.1.5, serviceAccount: api }]
`;

async function until<T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The ceiling of reconnect delay `n` (jitter takes up to half off it). */
const ceiling = (n: number, o: BackoffOptions = STREAM_BACKOFF): number => Math.min(o.maxMs, o.minMs * o.factor ** n);

/**
 * When each of `proxies` proxies that lost the control plane at time 0 is back
 * on the stream, the control plane being ready again at `readyAt`: at its first
 * attempt due at or after that moment.
 */
function reconnectTimes(proxies: number, readyAt: number, backoff: BackoffOptions, random: () => number): number[] {
  return Array.from({ length: proxies }, () => {
    let t = 0;
    for (let n = 0; t < readyAt; n++) t += backoffDelay(n, backoff, random);
    return t;
  });
}

describe('StreamConfigSource reconnects (virtual time, real mTLS)', function () {
  this.timeout(30_000);
  let dir: string;
  let ca: CertificateAuthority;
  let source: FileMeshSource;
  let plane: RunningControlPlane | undefined;
  let stream: StreamConfigSource | undefined;
  let port: number;
  /** Configs the stream took: one at every connect. */
  let taken = 0;
  const clock = new ManualScheduler(0);

  const up = async (): Promise<void> => {
    plane = await startControlPlane({ authority: ca, authenticator: new TokenFileAuthenticator([]), meshSource: source, log: silentLogger, host: '127.0.0.1', port, adminPort: 0 });
  };
  const down = async (): Promise<void> => {
    await plane?.close();
    plane = undefined;
  };
  /** The delay of the reconnect the stream scheduled once its connection failed or ended (real I/O). */
  const scheduled = (): Promise<number> => until('a reconnect to be scheduled', () => (clock.pending().length === 1 ? clock.pending()[0] : undefined));
  /** Fires the scheduled reconnect and waits for the config the control plane sends at once. */
  const reconnect = async (): Promise<void> => {
    const before = taken;
    clock.runNext();
    await until('the stream to connect', () => (taken > before ? true : undefined));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-stream-backoff-'));
    writeFileSync(join(dir, 'mesh.yaml'), MESH);
    ({ ca } = await newRootCa());
    source = new FileMeshSource(join(dir, 'mesh.yaml'), silentLogger, 20);
    port = await freePort();
    const creds = issueCredentials(ca, 'spiffe://cluster.local/ns/shop/sa/web');
    stream = new StreamConfigSource({
      address: `127.0.0.1:${port}`,
      tls: () => ({ key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem }),
      log: silentLogger,
      scheduler: clock,
      random: seededRandom(7),
    });
    stream.onChange(() => taken++);
  });

  after(async () => {
    stream?.close();
    source?.close();
    await down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('retries a control plane that is down at 200 ms doubling to a 3 s cap, and is back within 3 s of its return after a 40 s outage', async () => {
    const delays: number[] = [];
    stream!.start();
    while (clock.now() < 40_000) {
      delays.push(await scheduled());
      clock.runNext();
    }
    delays.forEach((d, n) => assert.ok(d >= ceiling(n) / 2 && d <= ceiling(n), `delay ${n} was ${d} ms`));
    assert.ok(delays.length >= 16, `${delays.length} attempts in 40 s`);
    assert.ok(Math.max(...delays) <= 3000);

    await up();
    const readyAt = clock.now();
    const wait = await scheduled();
    await reconnect();
    console.log(`      ${delays.length} attempts in ${readyAt} ms of outage; back ${wait} ms after the control plane (virtual time)`);
    assert.ok(wait <= 3000, `back ${wait} ms after the control plane was ready`);
  });

  it('keeps backing off from a control plane that drops each stream soon after taking it, and starts over after a stream that lasted', async () => {
    // Connected now; the stream drops after 1 s: the attempt count goes on (delays at the cap).
    for (let i = 0; i < 3; i++) {
      clock.advance(1000);
      await down();
      const d = await scheduled();
      assert.ok(d >= STREAM_BACKOFF.maxMs / 2, `reconnect after a stream that lasted 1 s in ${d} ms`);
      await up();
      await reconnect();
    }
    // A stream up for STREAM_STABLE_MS ended as a healthy one does: the first delay again.
    clock.advance(STREAM_STABLE_MS);
    await down();
    const first = await scheduled();
    assert.ok(first >= ceiling(0) / 2 && first <= ceiling(0), `reconnect after a stream that lasted ${STREAM_STABLE_MS} ms in ${first} ms`);
  });

  it('brings a thousand proxies back within 3 s of a control plane that was down 40 s, spread out, not in step', () => {
    const random = seededRandom(1);
    const readyAt = 40_000;
    const back = reconnectTimes(1000, readyAt, STREAM_BACKOFF, random).map((t) => t - readyAt);
    const latest = Math.max(...back);
    const perTenth = new Map<number, number>();
    for (const t of back) perTenth.set(Math.floor(t / 100), (perTenth.get(Math.floor(t / 100)) ?? 0) + 1);
    const busiest = Math.max(...perTenth.values());
    // The old backoff (DEFAULT_BACKOFF, up to 30 s) left proxies on a stale config for tens of seconds.
    const before = reconnectTimes(1000, readyAt, DEFAULT_BACKOFF, random).map((t) => t - readyAt);
    console.log(`      all back within ${latest} ms, at most ${busiest} in any 100 ms (with DEFAULT_BACKOFF: ${Math.max(...before)} ms)`);
    assert.ok(latest <= 3000, `the last proxy was back ${latest} ms after the control plane`);
    assert.ok(busiest <= 100, `${busiest} of 1000 proxies reconnected in one 100 ms`);
    assert.ok(Math.max(...before) > 5000);
  });
});
