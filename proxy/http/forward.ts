// The innermost HTTP handler: sends the request to one endpoint over a pooled
// HTTP/1.1 connection and returns its response. To a meshed endpoint, the
// pool's connections are streams of one mTLS connection (tsmesh/mux,
// net/mux.ts), or mTLS connections of their own when the endpoint's proxy does
// not speak tsmesh/mux; to the app and to endpoints without a sidecar, TCP.
// The framing is the proxy's own (h1/head.ts, h1/body.ts): the request head
// is one string written with the body's first bytes, the response head is
// parsed in one pass, and the body streams as the socket delivers it. A
// connection goes back to its pool once both bodies are complete and both
// sides allow it; anything else (an error, an abort, `connection: close`, a
// body cut short) ends it.
//
// This file keeps a pool per endpoint. The parts, by role:
// - h1/pool.ts: one endpoint's pool: which connection a request takes (an
//   idle one, a new one, or a wait in line), its limits, the replay of a
//   request whose kept-alive connection was closed under it, and the
//   tsmesh/mux session its connections are streams of.
// - h1/connection.ts: a pooled connection, handing its socket's events to
//   the request in progress.
// - h1/exchange.ts: one request and its response on one connection: writes
//   the head and body, reads the response head, streams its body, and gives
//   the connection back.
import type { ResolvedEndpoint } from '../config/table.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { H1Pool, IDLE_MS } from './h1/pool.js';
import type { ProxyRequest, ProxyResponse } from './types.js';

export type EndpointAddress = Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>;

/** Connection pools per endpoint (address, port and expected identity). */
export class EndpointPools {
  private readonly pools = new Map<string, H1Pool>();
  private readonly byEndpoint = new WeakMap<EndpointAddress, H1Pool>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly meshTls: MeshTls | undefined) {}

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  pool(ep: EndpointAddress): H1Pool {
    // An endpoint object of the config (or an inbound connection's app address) finds its pool without a key being built.
    const known = this.byEndpoint.get(ep);
    if (known !== undefined && !known.closed) return known;
    const key = EndpointPools.key(ep);
    let pool = this.pools.get(key);
    if (pool) this.byEndpoint.set(ep, pool);
    else {
      pool = new H1Pool(ep, this.meshTls);
      this.pools.set(key, pool);
      this.byEndpoint.set(ep, pool);
      this.sweeper ??= setInterval(() => {
        for (const p of this.pools.values()) p.closeIdle(IDLE_MS);
      }, IDLE_MS / 3).unref();
    }
    return pool;
  }

  /** Closes pools of endpoints no longer in `keep` (in-flight requests finish first). */
  retain(keep: readonly EndpointAddress[]): void {
    const wanted = new Set(keep.map(EndpointPools.key));
    for (const [key, pool] of this.pools) {
      if (!wanted.has(key)) {
        this.pools.delete(key);
        pool.close();
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.close()));
  }
}

/** `headTimeoutMs`: how long the response head may take once the request has been sent whole (0: no bound; http/timeout.ts). */
export function forward(pools: EndpointPools, ep: EndpointAddress, req: ProxyRequest, headTimeoutMs = 0): Promise<ProxyResponse> {
  return pools.pool(ep).request(req, headTimeoutMs);
}
