// The tap hub's bounds on real sockets: a control plane that stops reading
// makes the hub drop whole events and count them, never wait or block the
// caller; a bad filter line gets an error line and the connection ends.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Registry } from '../../lib/prom.js';
import { silentLogger } from '../../lib/log.js';
import { Cancellation } from '../http/cancel.js';
import { emptyHeaders, type ProxyRequest } from '../http/types.js';
import { createTapCounters, TapHub } from './hub.js';

/** A loopback connection: the hub's end and the control plane's. */
async function socketPair(): Promise<{ server: Server; hubSide: Socket; planeSide: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const planeSide = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [hubSide] = (await accepted) as [Socket];
  await once(planeSide, 'connect');
  return { server, hubSide, planeSide };
}

function request(path: string, big: string): ProxyRequest {
  const headers = emptyHeaders();
  headers.host = 'api.shop';
  headers['x-big'] = big;
  return { protocol: 'http1', method: 'GET', path, headers, body: null, startedAt: performance.now(), signal: new Cancellation() };
}

describe('tap hub (proxy/tap/hub.ts)', function () {
  this.timeout(30_000);
  let pair: Awaited<ReturnType<typeof socketPair>> | undefined;
  afterEach(() => {
    pair?.planeSide.destroy();
    pair?.hubSide.destroy();
    pair?.server.close();
    pair = undefined;
  });

  it('drops whole events past its send buffer and counts them, without waiting for a reader that stopped', async () => {
    pair = await socketPair();
    const registry = new Registry();
    const counters = createTapCounters(registry);
    let now = 0;
    // Virtual time: each request comes a second after the one before, so the rate never drops one.
    const hub = new TapHub({ counters, bufferBytes: 64 * 1024, now: () => (now += 1000) });
    hub.serve(pair.hubSide, silentLogger);
    pair.planeSide.pause();
    pair.planeSide.write(`${JSON.stringify({ maxRps: 1, showHeaders: true })}\n`);
    const opened = Date.now();
    while (!hub.active) {
      if (Date.now() - opened > 5000) assert.fail('the tap did not open');
      await new Promise((r) => setTimeout(r, 5));
    }
    const big = 'x'.repeat(4096);
    const n = 4000; // 16 MiB of events: more than loopback's buffers hold
    const started = performance.now();
    for (let i = 0; i < n; i++) hub.start(request(`/r/${i}`, big), { direction: 'inbound', sourceIdentity: () => 'spiffe://cluster.local/ns/shop/sa/web' });
    const ms = performance.now() - started;
    const sent = (await counters.sent.get()).values[0]?.value ?? 0;
    const dropped = (await counters.dropped.get()).values.find((v) => v.labels['reason'] === 'buffer-full')?.value ?? 0;
    assert.ok(dropped > 0, `sent ${sent}, none dropped`);
    assert.equal(sent + dropped, n);
    assert.ok(ms < 5000, `${n} requests took ${ms.toFixed(0)} ms`);
    // What was sent arrives as whole lines once the reader reads again.
    pair.planeSide.resume();
    let text = '';
    pair.planeSide.setEncoding('utf8');
    pair.planeSide.on('data', (c: string) => (text += c));
    const deadline = Date.now() + 10_000;
    while (text.split('\n').length - 1 < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const lines = text.split('\n').filter(Boolean);
    assert.equal(lines.length, sent);
    for (const l of lines) assert.equal((JSON.parse(l) as { type: string }).type, 'req');
  });

  it('ends a connection whose filter line is bad, saying why', async () => {
    pair = await socketPair();
    const hub = new TapHub();
    hub.serve(pair.hubSide, silentLogger);
    pair.planeSide.write(`${JSON.stringify({ maxRps: 5000, showHeaders: false })}\n`);
    let text = '';
    pair.planeSide.on('data', (c: Buffer) => (text += c.toString()));
    await once(pair.planeSide, 'end');
    assert.match(text, /"type":"error".*maxRps must be a number above 0 and at most 1000/);
    assert.equal(hub.active, false);
  });
});
