// The admin port under a flood: a thousand connections that idle or trickle
// a request head, held by a process of their own and reopened as soon as the
// server closes them, while a prober asks /ready and /live as kubelet does (a
// new connection each time, a 1 s timeout). The admin server runs with its
// shipped limits.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { probe, PROBE_TIMEOUT_MS, startFlood, stopFlood } from '../testdata/flood.js';
import { createAdminServer, DEFAULT_ADMIN_LIMITS } from './server.js';

const FLOOD = 1000;

const connectionsOf = (server: Server): Promise<number> => new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));

describe('proxy admin server under a flood of idle and slow connections', function () {
  this.timeout(90_000);
  let server: Server;
  let port: number;
  let flood: ChildProcess | undefined;
  const registry = new Registry();
  const refused = new Counter({ name: 'tsmesh_connections_refused_total', help: 'Connections closed unasked.', labelNames: ['direction', 'reason'], registers: [registry] });

  before(async () => {
    server = createAdminServer({ registry, readiness: () => undefined, config: () => ({}), refused });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await stopFlood(flood);
    flood = undefined;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** Probes /ready and /live in turn every 100 ms for `ms`; returns every answer. */
  async function probeFor(ms: number): Promise<{ path: string; status: string; ms: number }[]> {
    const answers: { path: string; status: string; ms: number }[] = [];
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const path = answers.length % 2 === 0 ? '/ready' : '/live';
      answers.push({ path, ...(await probe(port, path)) });
      await new Promise((r) => setTimeout(r, 100));
    }
    return answers;
  }

  const overloadCount = async (reason: string): Promise<number> => (await refused.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  it('answers /ready and /live within a probe timeout while 1,000 connections idle or trickle heads, reopened as they are closed', async () => {
    flood = await startFlood(port, FLOOD, 'mixed');
    // Past the first-request timeout, so the flood is closed and reopened while the probes run.
    const answers = await probeFor(DEFAULT_ADMIN_LIMITS.headersTimeoutMs + 2000);
    const failed = answers.filter((a) => !a.status.startsWith('HTTP/1.1 200 ') || a.ms >= PROBE_TIMEOUT_MS);
    const slowest = Math.max(...answers.map((a) => a.ms));
    assert.deepEqual(failed, [], `${failed.length} of ${answers.length} probes failed; slowest ${slowest.toFixed(0)} ms`);
    assert.ok(answers.length >= 40, `${answers.length} probes`);
    // The flood's connections that never sent a whole head were closed by the server.
    assert.ok((await overloadCount('first-request-timeout')) >= FLOOD, `first-request-timeout: ${await overloadCount('first-request-timeout')}`);
    assert.ok((await connectionsOf(server)) <= DEFAULT_ADMIN_LIMITS.maxConnections);
  });

  it('holds at most maxConnections when more connect, shedding the oldest idle ones, not the newest', async () => {
    const before = await overloadCount('overload');
    // Not reopened: a flood that reconnects as fast as it is shed is a connect flood, whose cost is the
    // CPU and the listen backlog, which no bound on open connections changes.
    flood = await startFlood(port, DEFAULT_ADMIN_LIMITS.maxConnections + 200, 'idle', { from: '127.0.0.2', once: true });
    const answers = await probeFor(2000);
    const failed = answers.filter((a) => !a.status.startsWith('HTTP/1.1 200 ') || a.ms >= PROBE_TIMEOUT_MS);
    assert.deepEqual(failed, [], `${failed.length} of ${answers.length} probes failed`);
    assert.ok((await overloadCount('overload')) > before, 'the flood beyond the bound was shed');
    assert.ok((await connectionsOf(server)) <= DEFAULT_ADMIN_LIMITS.maxConnections, `${await connectionsOf(server)} connections`);
    await stopFlood(flood);
    flood = undefined;
    // Every connection of the flood is gone from the server.
    const deadline = Date.now() + 5000;
    while ((await connectionsOf(server)) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await connectionsOf(server), 0);
  });
});
