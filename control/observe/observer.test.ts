// MeshObserver against real HTTP servers on loopback: it scrapes, keeps a
// window, reports a proxy that does not answer, and on demand scrapes only
// while its view is read.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../lib/log.js';
import { MeshObserver } from './observer.js';

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
