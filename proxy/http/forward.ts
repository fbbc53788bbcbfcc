// The innermost HTTP handler: sends the request to one endpoint over a pooled
// connection (mTLS to meshed endpoints) and returns its response.
import { Pool, type Dispatcher } from 'undici';
import type { Socket } from 'node:net';
import type { ResolvedEndpoint } from '../config/table.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { MESH_ALPN } from '../tls/alpn.js';
import { connectEndpoint } from '../upstream.js';
import type { ProxyRequest, ProxyResponse } from './types.js';

export type EndpointAddress = Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>;

/** Connection pools per endpoint (address, port and expected identity). */
export class EndpointPools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly meshTls: MeshTls | undefined) {}

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  pool(ep: EndpointAddress): Pool {
    const key = EndpointPools.key(ep);
    let pool = this.pools.get(key);
    if (!pool) {
      const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
      const meshTls = this.meshTls;
      pool = new Pool(`http://${host}:${ep.port}`, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: 0,
        bodyTimeout: 0,
        connect: (_opts, callback) => {
          connectEndpoint(meshTls, ep, MESH_ALPN.http1).then(
            (s) => callback(null, s as Socket),
            (e: Error) => callback(e, null),
          );
        },
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools of endpoints no longer in `keep` (in-flight requests finish first). */
  retain(keep: readonly EndpointAddress[]): void {
    const wanted = new Set(keep.map(EndpointPools.key));
    for (const [key, pool] of this.pools) {
      if (!wanted.has(key)) {
        this.pools.delete(key);
        void pool.close().catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.close().catch(() => undefined)));
  }
}

export async function forward(pools: EndpointPools, ep: EndpointAddress, req: ProxyRequest): Promise<ProxyResponse> {
  const res: Dispatcher.ResponseData = await pools.pool(ep).request({
    method: req.method as Dispatcher.HttpMethod,
    path: req.path,
    headers: req.headers as Record<string, string | string[]>,
    body: req.body,
    signal: req.signal,
  });
  const meta = ep.identity ? { peerIdentity: ep.identity } : {};
  return { status: res.statusCode, headers: res.headers, body: res.body, meta };
}
