// The demo's apps: plain HTTP servers that know nothing of the mesh. Each
// calls its upstreams at an address it is given (its sidecar, in loopback
// mode; the service's ClusterIP in a pod).
import { createServer, type Server } from 'node:http';
import { request } from 'undici';
import { RATINGS_FAILURE_SHARE } from './topology.js';

export type Upstreams = Readonly<Record<string, string>>; // service -> base URL

async function call(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, body: await res.body.text() };
}

export function createApp(name: string, upstreams: Upstreams, random: () => number = Math.random): Server {
  return createServer((req, res) => {
    const reply = (status: number, body: object): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    switch (name) {
      case 'ratings':
        if (random() < RATINGS_FAILURE_SHARE) reply(500, { error: 'ratings is flaky' });
        else reply(200, { stars: 1 + Math.floor(random() * 5) });
        return;
      case 'api':
      case 'api-v2':
        call(`${upstreams.ratings}/ratings`).then(
          (r) => reply(r.status === 200 ? 200 : 502, { version: name === 'api' ? 'v1' : 'v2', ratings: r.status === 200 ? JSON.parse(r.body) : r.status }),
          (e: Error) => reply(502, { error: e.message }),
        );
        return;
      case 'web':
        call(`${upstreams.api}/products${req.url ?? '/'}`).then(
          (r) => reply(r.status, { page: 'products', api: r.status === 200 ? JSON.parse(r.body) : r.status }),
          (e: Error) => reply(502, { error: e.message }),
        );
        return;
      default:
        reply(404, { error: `no app named ${name}` });
    }
  });
}

/** The steady traffic: `rps` requests per second to `url`, until stopped. */
export function startLoad(url: string, rps: number): { stop(): void; counts: { ok: number; failed: number } } {
  const counts = { ok: 0, failed: 0 };
  const timer = setInterval(() => {
    call(url).then(
      (r) => (r.status === 200 ? counts.ok++ : counts.failed++),
      () => counts.failed++,
    );
  }, 1000 / rps);
  return { stop: () => clearInterval(timer), counts };
}
