// Joins two byte streams whose reads their owners hand over, as an HTTP/1.1
// connection is joined to the endpoint's after 101 Switching Protocols
// (WebSocket and other upgrades): the client's socket is read by the HTTP/1.1
// server and the endpoint's by its pooled connection, each through a read
// callback set once (net/read-into.ts), so the tunnel is fed rather than
// listening for 'data'. Like net/splice.ts: a side whose reader cannot keep
// up pauses the other; half-close is passed on (the end of one side's bytes
// ends the other's writing only, and the connection lives on the other way);
// a side that closes before both ways ended (a reset, an error) closes the
// other; nothing moving either way for `idleMs` closes both. Once both ways
// have ended, each side closes when what was written to it is sent; one that
// has not after LINGER_MS, and sends nothing meanwhile, is closed (a TLS
// socket whose peer vanished keeps its last writes, and itself, for ever), as
// Envoy closes a connection its peer does not after its delayed-close time.
import type { SpliceResult } from './splice.js';

/** Once both ways ended, how long a side may take to send what is left without sending any of it. */
export const LINGER_MS = 5000;

/** What the tunnel needs of a side: a socket, a TLS socket or a tsmesh/mux stream. */
export interface TunnelSide {
  write(data: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  pause(): unknown;
  resume(): unknown;
  once(event: 'drain', listener: () => void): unknown;
  /** Bytes written and not yet sent, where the side tells (sockets do). */
  readonly writableLength?: number;
}

/** What the owner of a side tells the tunnel of it. */
export interface TunnelInlet {
  /** Bytes read from this side. */
  data(d: Buffer): void;
  /** This side sends no more (its FIN). */
  end(): void;
  /** This side's connection is gone. */
  close(): void;
}

/** One way through the tunnel: what is read from `from` is written to `to`. */
class Way implements TunnelInlet {
  bytes = 0;
  ended = false;
  closed = false;
  private waiting = false;
  private readonly onDrain = (): void => {
    this.waiting = false;
    if (!this.tunnel.over) this.from.resume();
  };

  constructor(
    private readonly tunnel: Tunnel,
    private readonly from: TunnelSide,
    private readonly to: TunnelSide,
  ) {}

  data(d: Buffer): void {
    if (this.tunnel.over || this.ended) return;
    this.bytes += d.length;
    this.tunnel.touch();
    if (!this.to.write(d) && !this.waiting) {
      this.waiting = true;
      this.from.pause();
      this.to.once('drain', this.onDrain);
    }
  }

  end(): void {
    if (this.tunnel.over || this.ended) return;
    this.ended = true;
    this.to.end();
    this.tunnel.wayEnded();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tunnel.sideClosed();
  }
}

export class Tunnel {
  /** Feeds what side a gives: its bytes go to b. */
  readonly a: TunnelInlet;
  /** Feeds what side b gives: its bytes go to a. */
  readonly b: TunnelInlet;
  /** Settles once both sides are closed: the bytes each gave. */
  readonly done: Promise<SpliceResult>;
  over = false;
  private readonly ab: Way;
  private readonly ba: Way;
  private readonly idle: NodeJS.Timeout;
  private linger: NodeJS.Timeout | undefined;
  /** What each side still had to send at the last look, once both ways ended. */
  private unsent = [0, 0];
  private settle!: (r: SpliceResult) => void;

  constructor(
    private readonly sideA: TunnelSide,
    private readonly sideB: TunnelSide,
    idleMs: number,
  ) {
    this.a = this.ab = new Way(this, sideA, sideB);
    this.b = this.ba = new Way(this, sideB, sideA);
    this.done = new Promise((resolve) => (this.settle = resolve));
    this.idle = setTimeout(() => this.abort(), idleMs);
    this.idle.unref();
  }

  touch(): void {
    this.idle.refresh();
  }

  /** Both ways ended: the sides close once their last bytes are sent, or linger no longer than that takes. */
  wayEnded(): void {
    if (!this.ab.ended || !this.ba.ended || this.linger !== undefined) return;
    this.unsent = [this.sideA.writableLength ?? 0, this.sideB.writableLength ?? 0];
    this.linger = setTimeout(() => this.lingered(), LINGER_MS);
    this.linger.unref();
  }

  private lingered(): void {
    if (this.over) return;
    const now = [this.sideA.writableLength ?? 0, this.sideB.writableLength ?? 0];
    const sending = (this.ab.closed || now[0]! < this.unsent[0]!) && (this.ba.closed || now[1]! < this.unsent[1]!);
    if (sending && !(this.ab.closed && this.ba.closed)) {
      this.unsent = now;
      this.linger!.refresh();
      return;
    }
    this.abort();
  }

  /** Closes both sides now (idle, or one side broke off, or lingered). */
  abort(): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.idle);
    clearTimeout(this.linger);
    this.sideA.destroy();
    this.sideB.destroy();
    this.settle({ fromA: this.ab.bytes, fromB: this.ba.bytes });
  }

  sideClosed(): void {
    if (this.over) return;
    // Both ways ended: each side closes once what was written to it is sent; the idle timer bounds the wait.
    if (!(this.ab.ended && this.ba.ended)) {
      this.abort();
      return;
    }
    if (this.ab.closed && this.ba.closed) {
      this.over = true;
      clearTimeout(this.idle);
      clearTimeout(this.linger);
      this.settle({ fromA: this.ab.bytes, fromB: this.ba.bytes });
    }
  }
}
