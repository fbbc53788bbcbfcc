// Connections that wait on their client (for its first bytes, its TLS
// handshake, its next request), and a bound on how many: one more than the
// limit sheds a waiting connection rather than refusing the newest, so a
// flood of idle or trickling clients holds bounded memory and cannot lock out
// the next real client (kubelet's probe, the app's next connection), which
// speaks at once. The one shed is the oldest of the source address that holds
// the most, so one flooding address does not push out another's.
import type { Socket } from 'node:net';

/**
 * The listeners' bound on connections that have not shown their protocol or
 * caller yet. Each holds about 4 kB of heap while it waits (1,000 idle ones
 * measured 4.0-4.2 MB), so the bound is about 4 MB per listener.
 */
export const DEFAULT_PENDING_LIMIT = 1024;

export class WaitingConnections {
  // Per source address; a Set keeps insertion order, so its first is its oldest.
  private readonly waiting = new Map<string, Set<Socket>>();
  private readonly served = new Map<string, Set<Socket>>();
  // Read once: a closed socket no longer knows its peer.
  private readonly sourceOf = new Map<Socket, string>();

  /**
   * `countServed`: connections being served count toward the limit too (the
   * admin server bounds all of its connections; a listener bounds only those
   * that have not shown their protocol yet). A served connection is shed only
   * when none waits.
   */
  constructor(
    private readonly limit: number,
    private readonly shed: (socket: Socket) => void,
    private readonly countServed = false,
  ) {
    if (!(Number.isInteger(limit) && limit >= 1)) throw new Error(`the limit of waiting connections must be a whole number >= 1, not ${limit}`);
  }

  get size(): number {
    return this.sourceOf.size;
  }

  /** `socket` waits on its client from now on, as its source's newest; beyond the limit, others are shed. */
  wait(socket: Socket): void {
    const source = this.forget(socket) ?? socket.remoteAddress ?? '';
    this.sourceOf.set(socket, source);
    add(this.waiting, source, socket);
    while (this.sourceOf.size > this.limit) {
      const oldest = oldestOfLargest(this.waiting) ?? oldestOfLargest(this.served)!;
      this.forget(oldest);
      this.shed(oldest);
    }
  }

  /** `socket` is being served. */
  serve(socket: Socket): void {
    const source = this.forget(socket) ?? socket.remoteAddress ?? '';
    if (!this.countServed) return;
    this.sourceOf.set(socket, source);
    add(this.served, source, socket);
  }

  /** `socket` is closed, or no longer bounded here. Returns its source if it was. */
  forget(socket: Socket): string | undefined {
    const source = this.sourceOf.get(socket);
    if (source === undefined) return undefined;
    this.sourceOf.delete(socket);
    remove(this.waiting, source, socket);
    remove(this.served, source, socket);
    return source;
  }
}

function add(by: Map<string, Set<Socket>>, source: string, socket: Socket): void {
  const set = by.get(source);
  if (set) set.add(socket);
  else by.set(source, new Set([socket]));
}

function remove(by: Map<string, Set<Socket>>, source: string, socket: Socket): void {
  const set = by.get(source);
  if (set?.delete(socket) && set.size === 0) by.delete(source);
}

function oldestOfLargest(by: Map<string, Set<Socket>>): Socket | undefined {
  let largest: Set<Socket> | undefined;
  for (const set of by.values()) if (!largest || set.size > largest.size) largest = set;
  if (largest) for (const socket of largest) return socket;
  return undefined;
}
