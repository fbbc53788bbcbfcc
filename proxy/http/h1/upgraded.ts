// The endpoint's side of a pooled connection after 101 Switching Protocols
// (h1/exchange.ts hands it over): it has left its pool, and its events go to
// the tunnel that joins it to the client's connection (net/tunnel.ts). What
// the endpoint sends before the join (the bytes after the 101's head, or the
// first frames of the new protocol) is kept, the socket paused, and given to
// the tunnel first.
import type { Socket } from 'node:net';
import { Tunnel, type TunnelSide } from '../../net/tunnel.js';
import type { UpgradedConnection } from '../types.js';
import type { Conn, ConnUser } from './connection.js';

export class Upgraded implements UpgradedConnection, ConnUser {
  private tunnel: Tunnel | undefined;
  private readonly early: Buffer[] = [];
  private ended = false;
  private closed = false;
  private readonly socket: Socket;

  constructor(
    conn: Conn,
    readonly protocol: string,
    rest: Buffer,
  ) {
    this.socket = conn.socket;
    // Either side may end its bytes first, and the other way stays open (a socket's, a TLS socket's or a tsmesh/mux stream's field).
    this.socket.allowHalfOpen = true;
    conn.user = this;
    if (rest.length > 0) this.early.push(rest);
    if (this.socket.destroyed) this.closed = true;
  }

  join(client: TunnelSide, idleMs: number): Tunnel {
    if (this.tunnel) throw new Error('the upgraded connection is joined already');
    const socket = this.socket;
    const tunnel = (this.tunnel = new Tunnel(client, socket as TunnelSide, idleMs));
    for (const d of this.early.splice(0)) tunnel.b.data(d);
    if (this.ended) tunnel.b.end();
    if (this.closed) tunnel.b.close();
    else socket.resume();
    return tunnel;
  }

  destroy(): void {
    this.closed = true;
    this.early.length = 0;
    this.socket.destroy();
  }

  onData(chunk: Buffer): void {
    if (this.tunnel) {
      this.tunnel.b.data(chunk);
      return;
    }
    this.early.push(chunk);
    this.socket.pause();
  }

  onEnd(): void {
    if (this.tunnel) this.tunnel.b.end();
    else this.ended = true;
  }

  onClose(): void {
    if (this.tunnel) this.tunnel.b.close();
    else this.closed = true;
  }

  onError(): void {
    // A reset or an error: the 'close' that follows ends the tunnel.
    this.socket.destroy();
  }
}
