// A pooled HTTP/1.1 connection (h1/pool.ts): a TCP or mTLS socket, or a
// tsmesh/mux stream used as one. Its handlers are set once and hand each
// event to whoever uses the connection now: the exchange in progress
// (h1/exchange.ts), or, after 101 Switching Protocols, the tunnel's side
// (h1/upgraded.ts); none between requests.
import type { Socket } from 'node:net';
import { copiedReads } from '../../net/read-into.js';
import { HEAD_WAITS, type HeadWait } from '../head-waits.js';

/** What a connection's events go to. */
export interface ConnUser {
  onData(chunk: Buffer): void;
  /** The endpoint sends no more. */
  onEnd(): void;
  /** The connection is gone. */
  onClose(): void;
  onError(e: Error): void;
  /** No response head within the response head timeout (armHeadTimer). */
  onHeadTimeout?(): void;
}

/**
 * A pooled connection. Its socket handlers are set once and hand each event
 * to its user, if any: a request adds no socket listeners.
 */
export class Conn implements HeadWait {
  idleSince = 0;
  /** Requests it has carried. */
  uses = 1;
  user: ConnUser | undefined;
  private sock: Socket | undefined;
  /** Bytes came before the socket was handed over: nobody asked for them. */
  private early = false;
  /** While a request on it waits for its response head (HEAD_WAITS): when the wait ends, performance.now() ms. */
  headDeadline = 0;

  get socket(): Socket {
    return this.sock!;
  }

  /** Its socket's reads (net's `onread`): into one shared buffer, handed on as copies. */
  readonly onread = copiedReads((d) => this.onRead(d));
  /** Its stream's reads, when it is a tsmesh/mux stream. */
  readonly onStreamData = (d: Buffer): void => void this.onRead(d);

  private onRead(d: Buffer): boolean {
    if (this.user) {
      this.user.onData(d);
      return true;
    }
    // Bytes nobody asked for: the connection is out of step with the endpoint.
    if (this.sock) this.sock.destroy();
    else this.early = true;
    return false;
  }

  /** The request in progress has been sent whole (or got an interim response): its user hears onHeadTimeout if no head comes within `ms`. */
  armHeadTimer(ms: number): void {
    if (this.sock?.destroyed) return;
    HEAD_WAITS.add(this, ms);
  }

  /** The response head came, or the request is over. */
  disarmHeadTimer(): void {
    HEAD_WAITS.delete(this);
  }

  onHeadTimeout(): void {
    this.user?.onHeadTimeout?.();
  }

  /** Takes the connected socket that reads through `onread`. */
  attach(socket: Socket): this {
    this.sock = socket;
    if (this.early) socket.destroy();
    socket.setNoDelay(true);
    socket.on('end', () => {
      if (this.user) this.user.onEnd();
      // An idle connection the endpoint ended carries no more requests.
      else socket.destroy();
    });
    socket.on('close', () => {
      HEAD_WAITS.delete(this);
      this.user?.onClose();
    });
    // Between requests an error (a reset of an idle connection) only closes it.
    socket.on('error', (e: Error) => this.user?.onError(e));
    return this;
  }
}

