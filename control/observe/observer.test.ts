// MeshObserver against real HTTP servers on loopback: it scrapes, keeps a
// window, reports a proxy that does not answer, and on demand scrapes only
// while its view is read.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../lib/log.js';
import { MeshObserver, SCRAPE_CONCURRENCY } from './observer.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('MeshObserver', () => {
  let server: Server;
  let url: string;
  let scrapes = 0;
  let observer: MeshObserver | undefined;
  before(async () => {
    server = createServer((_req, res) => {
      scrapes += 1;
      // 10 more requests at every scrape.
      res.end(`tsmesh_requests_total{direction="inbound",response_code="200",tls="true"} ${scrapes * 10}\ntsmesh_identity_cert_expiration_timestamp_seconds 4102444800\n`);
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
  });
  afterEach(() => observer?.close());
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('scrapes every target each round and reports the one that does not answer', async () => {
    // A port nothing listens on: the server's, once closed.
    const gone = createServer().listen(0, '127.0.0.1');
    await once(gone, 'listening');
    const deadUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/metrics`;
    await new Promise((r) => gone.close(r));
    observer = new MeshObserver({
      targets: () => [
        { workload: 'web', namespace: 'demo', url },
        { workload: 'web', namespace: 'demo', url: deadUrl },
      ],
      log: silentLogger,
    });
    await observer.scrapeAll();
    await sleep(100);
    await observer.scrapeAll();
    const view = observer.view();
    observer.close();
    const [web] = view.workloads;
    assert.equal(web!.pods, 2);
    assert.equal(web!.meshedPods, 1);
    assert.equal(web!.requests, 10);
    assert.ok(web!.rps > 0);
    const dead = view.proxies.find((p) => p.url === deadUrl)!;
    assert.equal(dead.up, false);
    assert.match(dead.error!, /ECONNREFUSED/);
    assert.equal(view.proxies.find((p) => p.url === url)!.certExpiresAt, '2100-01-01T00:00:00.000Z');
  });

  it('paces a round: at most SCRAPE_CONCURRENCY scrapes in flight and maxScrapesPerSecond started, every target scraped once', async function () {
    this.timeout(20_000);
    let inFlight = 0;
    let most = 0;
    const seen: string[] = [];
    const slow = createServer((req, res) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      seen.push(req.url!);
      // Each answer takes 200 ms, so that scrapes overlap whenever the pace lets them.
      setTimeout(() => {
        inFlight -= 1;
        res.end('tsmesh_requests_total{direction="inbound",response_code="200",tls="true"} 1\n');
      }, 200);
    }).listen(0, '127.0.0.1');
    await once(slow, 'listening');
    const base = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/metrics`;
    const targets = Array.from({ length: 30 }, (_, i) => ({ workload: `w${i}`, namespace: 'demo', url: `${base}?pod=${i}` }));
    try {
      // Unpaced in rate: the concurrency alone bounds it.
      observer = new MeshObserver({ targets: () => targets, log: silentLogger, maxScrapesPerSecond: 100_000 });
      await observer.scrapeAll();
      observer.close();
      assert.equal(most, SCRAPE_CONCURRENCY, `at most ${SCRAPE_CONCURRENCY} in flight, and that many when answers are slow`);
      assert.deepEqual([...seen].sort(), targets.map((t) => t.url.slice(t.url.indexOf('/metrics'))).sort());
      // 20 a second: the 30th scrape starts no sooner than 29 / 20 s after the round's.
      seen.length = 0;
      most = 0;
      observer = new MeshObserver({ targets: () => targets, log: silentLogger, maxScrapesPerSecond: 20 });
      const start = Date.now();
      await observer.scrapeAll();
      const took = Date.now() - start;
      assert.ok(took >= 1450, `the round took ${took} ms; paced at 20 a second it takes at least 1,450 ms`);
      assert.equal(seen.length, 30);
      assert.equal(observer.view().workloads.length, 30);
    } finally {
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  });

  it('on demand: scrapes while read, pauses when nobody reads, resumes on the next read', async () => {
    observer = new MeshObserver({ targets: () => [{ workload: 'web', namespace: 'demo', url }], log: silentLogger, intervalMs: 50, idleAfterMs: 300 });
    const start = scrapes;
    await sleep(200);
    assert.equal(scrapes, start, 'scraped before anyone read the view');
    observer.view();
    await sleep(250);
    assert.ok(scrapes - start >= 2, `only ${scrapes - start} scrapes while read`);
    await sleep(800); // well past idleAfterMs without a read
    const paused = scrapes;
    await sleep(300);
    assert.equal(scrapes, paused, 'kept scraping with nobody reading');
    observer.view();
    await sleep(250);
    assert.ok(scrapes > paused, 'did not resume on a read');
  });

  it('with a slower cadence for nobody reading: scrapes from the start at that cadence, at the live one while read, and back to the slow one after', async function () {
    this.timeout(10_000);
    observer = new MeshObserver({ targets: () => [{ workload: 'web', namespace: 'demo', url }], log: silentLogger, intervalMs: 50, idleAfterMs: 300, idleIntervalMs: 400 });
    // As the control plane starts it: the history fills before anyone reads.
    const before = scrapes;
    observer.start();
    await sleep(700); // the live cadence's 300 ms ends, then the slow one
    assert.ok(scrapes > before, 'scraped before anyone read the view');
    const slowFrom = scrapes;
    await sleep(1300);
    const slow = scrapes - slowFrom;
    assert.ok(slow >= 2 && slow <= 5, `${slow} scrapes in 1.3 s at one each 400 ms`);
    const readAt = scrapes;
    observer.view();
    await sleep(250);
    assert.ok(scrapes - readAt >= 3, `only ${scrapes - readAt} scrapes in 250 ms at the live cadence after a read`);
  });
});
