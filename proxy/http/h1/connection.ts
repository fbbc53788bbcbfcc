// A pooled HTTP/1.1 connection (h1/pool.ts): a TCP or mTLS socket, or a
// tsmesh/mux stream used as one. Its handlers are set once and hand each
// event to the exchange in progress (h1/exchange.ts), if any.
import type { Socket } from 'node:net';
import { copiedReads } from '../../net/read-into.js';
import type { Exchange } from './exchange.js';

/**
 * A pooled connection. Its socket handlers are set once and hand each event
 * to the exchange in progress, if any: a request adds no socket listeners.
 */
export class Conn {
  idleSince = 0;
  /** Requests it has carried. */
  uses = 1;
  exchange: Exchange | undefined;
  private sock: Socket | undefined;
  /** Bytes came before the socket was handed over: nobody asked for them. */
  private early = false;

  get socket(): Socket {
    return this.sock!;
  }

  /** Its socket's reads (net's `onread`): into one shared buffer, handed on as copies. */
  readonly onread = copiedReads((d) => this.onRead(d));
  /** Its stream's reads, when it is a tsmesh/mux stream. */
  readonly onStreamData = (d: Buffer): void => void this.onRead(d);

  private onRead(d: Buffer): boolean {
    if (this.exchange) {
      this.exchange.onData(d);
      return true;
    }
    // Bytes nobody asked for: the connection is out of step with the endpoint.
    if (this.sock) this.sock.destroy();
    else this.early = true;
    return false;
  }

  /** Takes the connected socket that reads through `onread`. */
  attach(socket: Socket): this {
    this.sock = socket;
    if (this.early) socket.destroy();
    socket.setNoDelay(true);
    socket.on('end', () => this.exchange?.onEnd());
    socket.on('close', () => this.exchange?.onEnd());
    // Between requests an error (a reset of an idle connection) only closes it.
    socket.on('error', (e: Error) => this.exchange?.onError(e));
    return this;
  }
}
