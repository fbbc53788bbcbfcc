// 103 Early Hints over HTTP/2 (RFC 8297, RFC 9110 15.2): a node:http2 app
// sends 103s with `link` fields before its final response, and they reach
// HTTP/2 clients in that order, through a sidecar pair on loopback (h2c in,
// tsmesh/h2 between the proxies, h2c to the app) and through one outbound
// proxy to an endpoint without a sidecar (h2c both sides). The clients are
// real: node:http2, curl --http2-prior-knowledge, nghttp. A request goes on
// in the protocol it arrived in, so an HTTP/1.1 client meets an HTTP/1.1 app
// (its 1xx: proxy/http/h1/upgrade.test.ts).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { MAX_INTERIM_RESPONSES } from './http/h1/exchange.js';
import { type Sidecar } from './sidecar.js';
import { PLAIN_CLIENT_ADDRESS, pairAndPlain } from './testdata/mesh.js';

const execFileP = promisify(execFile);

interface Seen {
  /** Each head as it came: the interim ones, then the final one. */
  heads: IncomingHttpHeaders[];
  body: string;
}

function get(client: ClientHttp2Session, authority: string, path: string): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':authority': authority, ':path': path }, { endStream: true });
    const heads: IncomingHttpHeaders[] = [];
    let body = '';
    s.on('headers', (h: IncomingHttpHeaders) => heads.push(h));
    s.on('response', (h: IncomingHttpHeaders) => heads.push(h));
    s.on('data', (d: Buffer) => (body += d.toString()));
    s.on('end', () => resolve({ heads, body }));
    s.on('error', reject);
  });
}

describe('103 Early Hints over HTTP/2 through the proxies', function () {
  this.timeout(30_000);
  let app: Http2Server;
  let a: Sidecar;
  let b: Sidecar;
  let client: ClientHttp2Session;
  /** A client of the Service without a sidecar: one proxy between it and the app. */
  let single: ClientHttp2Session;

  before(async () => {
    const { ca } = await newRootCa();
    app = createH2cServer();
    app.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => stream.destroy());
      const path = String(headers[':path']);
      if (path === '/flood') {
        for (let i = 0; i < 100; i++) stream.additionalHeaders({ ':status': 103, link: `</x${i}.css>; rel=preload` });
      } else {
        stream.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload; as=style' });
        stream.additionalHeaders({ ':status': 103, link: ['</app.js>; rel=preload; as=script', '</font.woff2>; rel=preload; as=font'] });
      }
      // The final answer comes later, as a page the app is still making.
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'text/html' });
        stream.end('page');
      }, 50);
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    ({ a, b } = await pairAndPlain(ca, appPort));
    client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    single = h2connect(`http://127.0.0.1:${a.outboundPort}`, { createConnection: () => connect({ host: '127.0.0.1', port: a.outboundPort, localAddress: PLAIN_CLIENT_ADDRESS }) });
  });

  after(async () => {
    client?.close();
    single?.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
  });

  for (const [name, which] of [['a sidecar pair', () => client], ['one outbound proxy', () => single]] as const) {
    it(`node:http2 through ${name}: the 103s and their link fields reach the client in order, before the final response`, async () => {
      const r = await get(which(), 'api.shop', '/');
      assert.deepEqual(
        r.heads.map((h) => [h[':status'], h['link']]),
        [
          [103, '</style.css>; rel=preload; as=style'],
          [103, '</app.js>; rel=preload; as=script, </font.woff2>; rel=preload; as=font'],
          [200, undefined],
        ],
      );
      assert.equal(r.body, 'page');
    });
  }

  it(`passes at most ${MAX_INTERIM_RESPONSES} interim responses a request, as over HTTP/1.1`, async () => {
    const r = await get(client, 'api.shop', '/flood');
    assert.equal(r.heads.filter((h) => Number(h[':status']) === 103).length, MAX_INTERIM_RESPONSES);
    assert.equal(r.heads.at(-1)?.[':status'], 200);
    assert.equal(r.body, 'page');
  });

  it('curl --http2-prior-knowledge shows the 103s before the 200', async () => {
    const { stderr, stdout } = await execFileP('curl', ['-sv', '--http2-prior-knowledge', `http://127.0.0.1:${a.outboundPort}/`]);
    assert.equal(stdout, 'page');
    const statuses = [...stderr.matchAll(/^< HTTP\/2 (\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ['103', '103', '200']);
    assert.match(stderr, /^< link: <\/style.css>; rel=preload; as=style/m);
  });

  it('nghttp -v shows the 103s before the 200', async () => {
    const { stdout } = await execFileP('nghttp', ['-v', `http://127.0.0.1:${a.outboundPort}/`]);
    const statuses = [...stdout.matchAll(/:status: (\d+)/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['103', '103', '200']);
    assert.match(stdout, /link: <\/style.css>; rel=preload; as=style/);
  });
});
