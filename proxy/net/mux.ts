// tsmesh/mux: many byte streams over one mTLS connection between two proxies
// (ALPN tsmesh/mux), each stream carrying one HTTP/1.1 connection's bytes;
// under ALPN tsmesh/tcp-mux the same frames carry opaque TCP connections to
// one port (net/tcp-mux.ts).
// The frames every stream writes in one turn of the event loop go out in one
// TLS write, and one read brings in the frames of many streams: at load, the
// sidecars' TLS reads, writes and wake-ups are shared by the requests in
// flight instead of each request paying for its own (the cost that made a
// TLS connection per request the most expensive part of the HTTP path).
//
// Frame: stream id (u32), type (u8), payload length (u24), payload.
//   DATA    stream bytes; the first frame of a new (odd, rising) id opens it
//           (an empty one opens it with no bytes: opaque TCP, server-first)
//   FIN     the sender will write no more on the stream (half-close)
//   RST     the stream is abandoned; payload: one byte, RESET_REFUSED when the
//           peer never read the stream (safe to send again elsewhere)
//   WINDOW  payload: u32, bytes the receiver has taken since the last WINDOW
//   GOAWAY  id: the last stream the sender will serve; open no more
// Flow control is per stream: a sender has at most STREAM_WINDOW bytes
// unacknowledged, so a stream whose reader stops holds at most that much in
// the receiver's memory and never stalls the others.
//
// Memory is bounded per proxy as well (MuxBudget): a server takes up to
// MAX_STREAMS streams per connection, so one peer could park 256 MiB behind
// paused readers within the windows alone. Every session of the process
// charges the bytes it holds for paused readers to one budget. Once it is
// spent, new streams are refused (RST refused: no new work while memory is
// short) and a session whose read held more bytes stops reading its socket
// until the budget has room again. TCP then holds the peer back, and the
// head-of-line blocking falls on the connections that add to the overspend; a
// connection whose streams flow, or whose paused streams are already at their
// windows, reads on. Smaller windows would not do it: the window is implicit
// (an older proxy on the other side assumes STREAM_WINDOW, and a new frame
// type or setting is a protocol error for it, so a smaller one needs a
// handshake first), and any window times streams times connections is still
// more than a budget; not reading bounds a peer however many streams it
// opens, hostile or not. The sending side keeps its part bounded too: while
// its socket holds SOCKET_BACKLOG_BYTES the peer has not taken, DATA waits in
// the streams and their writers are told to wait ('drain'), so a receiver
// that stops reading holds back the callers' reads instead of filling the
// sender's memory.
//
// The client (the side that
// dialled) opens streams; the server takes them. Anything else from the peer
// (an unknown type, an oversized frame, data beyond the window) ends the
// session: the peer is another tsmesh proxy, so it is a bug, not traffic.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { copiedReads, readInto } from './read-into.js';

const DATA = 0;
const FIN = 1;
const RST = 2;
const WINDOW = 3;
const GOAWAY = 4;
const HEADER_BYTES = 8;
/** Larger writes go out in several DATA frames. */
const MAX_FRAME_PAYLOAD = 64 * 1024;
/** Bytes a sender may have in flight on one stream before the receiver's WINDOW. */
export const STREAM_WINDOW = 256 * 1024;
/** The receiver acknowledges once its reader has taken this much. */
const WINDOW_UPDATE_BYTES = STREAM_WINDOW / 4;
/** Streams a server holds open for one client at once; more are refused. */
export const MAX_STREAMS = 1024;
/** What the proxy holds for paused readers, all sessions together, before it holds peers back (MuxBudget). */
export const MUX_BUDGET_BYTES = 32 * 1024 * 1024;
/** A held payload's cost beyond its bytes (its Buffer's own objects, about 110 bytes of V8's heap), so that a peer of one-byte frames is counted too. */
export const HELD_PAYLOAD_OVERHEAD = 128;
/** A session stops sending DATA while this much waits in its socket, unread by the peer. */
const SOCKET_BACKLOG_BYTES = 4 * STREAM_WINDOW;
const RESET_CANCEL = 0;
const RESET_REFUSED = 1;

type Payload = Buffer | string;

/** Bytes a frame's payload takes: a number is RST's code (one byte) or WINDOW's increment (four). */
function payloadLength(type: number, payload: Payload | number | undefined): number {
  if (payload === undefined) return 0;
  if (typeof payload === 'number') return type === RST ? 1 : 4;
  return payload.length;
}

/**
 * The proxy's memory for tsmesh/mux: the bytes its streams received and
 * their readers have not taken (a paused reader's), counted across every
 * session that charges it. O(1) per payload; the sessions that stopped
 * reading are woken when it falls below the limit. Held bytes exceed the
 * limit by at most one socket read of each session that was reading at the
 * time (64 kB of payload, or its frames' overhead).
 */
export class MuxBudget {
  /** Bytes held for paused readers now, each payload with HELD_PAYLOAD_OVERHEAD. */
  buffered = 0;
  /** Streams refused because the budget was spent. */
  refusedStreams = 0;
  private readonly stalled = new Set<MuxSession>();

  constructor(readonly limit = MUX_BUDGET_BYTES) {}

  get spent(): boolean {
    return this.buffered >= this.limit;
  }

  charge(bytes: number): void {
    this.buffered += bytes;
  }

  release(bytes: number): void {
    this.buffered -= bytes;
    if (this.stalled.size === 0 || this.spent) return;
    const sessions = [...this.stalled];
    this.stalled.clear();
    for (const s of sessions) s.readAgain();
  }

  /** `session` stopped reading; it reads again when the budget has room. */
  stall(session: MuxSession): void {
    this.stalled.add(session);
  }

  forget(session: MuxSession): void {
    this.stalled.delete(session);
  }
}

/** The budget every session of the process charges unless given its own. */
export const proxyMuxBudget = new MuxBudget();

/** The peer reset the stream. `refused`: it never read it, so what was written can be sent again. */
export class StreamResetError extends Error {
  override name = 'StreamResetError';
  readonly code = 'ECONNRESET';
  constructor(
    message: string,
    readonly refused: boolean,
  ) {
    super(message);
  }
}

/**
 * One stream: the subset of a socket that the proxy's HTTP/1.1 server and
 * pools use (write, end, destroy, pause, resume; 'data', 'end', 'close',
 * 'error', 'drain').
 */
export class MuxStream extends EventEmitter {
  destroyed = false;
  readableEnded = false;
  writableEnded = false;
  /** Set instead of listening for 'data': each payload is handed to it. */
  reader: ((data: Buffer) => void) | undefined;
  private paused = false;
  /** Received while paused: at most STREAM_WINDOW bytes, since the sender waits for WINDOW. */
  private readonly received: Buffer[] = [];
  /** What `received` is charged to the budget. */
  private held = 0;
  private finReceived = false;
  /** Taken by the reader and not yet acknowledged with WINDOW. */
  private taken = 0;
  /** Bytes of DATA received and not yet acknowledged: the window the sender used up. */
  private unacknowledged = 0;
  private sendWindow = STREAM_WINDOW;
  /** Writes the window did not allow yet, in order. */
  private readonly unsent: Buffer[] = [];
  private finPending = false;
  private needDrain = false;

  constructor(
    private readonly session: MuxSession,
    readonly id: number,
    /**
     * false: the stream ends its own side when the peer's FIN arrives, as a
     * socket does without allowHalfOpen. A connection that switched protocols
     * (an HTTP/1.1 Upgrade) sets it, so that either side may end its bytes
     * first and the other way stays open.
     */
    public allowHalfOpen: boolean,
  ) {
    super();
  }

  /** Like a socket's write: false when the data waits for the peer's window ('drain' follows). Strings are latin1, as the proxy's HTTP/1.1 heads are. */
  write(data: Payload, _encoding?: BufferEncoding): boolean {
    if (this.destroyed || this.writableEnded) return false;
    const sendNow = this.unsent.length === 0 && !this.session.congested;
    if (typeof data === 'string' && sendNow && data.length <= this.sendWindow && data.length <= MAX_FRAME_PAYLOAD) {
      // A head: written into the flush's buffer as it is, not first copied into a Buffer of its own.
      this.sendWindow -= data.length;
      this.session.send(this.id, DATA, data);
      return true;
    }
    let buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    if (sendNow) {
      const now = Math.min(buf.length, this.sendWindow);
      if (now > 0) this.sendData(buf.subarray(0, now));
      buf = buf.subarray(now);
      if (buf.length === 0) return true;
    }
    this.unsent.push(buf);
    this.needDrain = true;
    if (this.session.congested) this.session.waitForSocket(this);
    return false;
  }

  end(data?: Payload): this {
    if (this.destroyed || this.writableEnded) return this;
    if (data !== undefined && data.length > 0) this.write(data);
    this.writableEnded = true;
    if (this.unsent.length > 0) this.finPending = true;
    else this.sendFin();
    return this;
  }

  destroy(_error?: Error): this {
    if (this.destroyed) return this;
    // A stream both sides ended is gone on both: there is nothing to reset.
    if (!(this.readableEnded && this.writableEnded && !this.finPending)) this.session.send(this.id, RST, RESET_CANCEL);
    this.close();
    return this;
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    if (!this.paused) return this;
    this.paused = false;
    while (this.received.length > 0 && !this.paused && !this.destroyed) {
      const data = this.received.shift()!;
      const cost = data.length + HELD_PAYLOAD_OVERHEAD;
      this.held -= cost;
      this.session.budget.release(cost);
      this.take(data);
    }
    if (this.finReceived && this.received.length === 0 && !this.paused) this.ended();
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  /**
   * Opens the stream on the peer now, with an empty DATA frame, rather than
   * with the first bytes written: opaque TCP to a server that speaks first
   * (a greeting) has nothing to write until the app's connection is open.
   */
  announce(): void {
    if (this.destroyed || this.writableEnded) return;
    this.session.send(this.id, DATA, undefined);
  }

  private sendData(buf: Buffer): void {
    this.sendWindow -= buf.length;
    for (let at = 0; at < buf.length; at += MAX_FRAME_PAYLOAD) this.session.send(this.id, DATA, buf.subarray(at, Math.min(buf.length, at + MAX_FRAME_PAYLOAD)));
  }

  private sendFin(): void {
    this.session.send(this.id, FIN, undefined);
    if (this.readableEnded) this.close();
  }

  private close(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.received.length = 0;
    this.unsent.length = 0;
    if (this.held > 0) this.session.budget.release(this.held);
    this.held = 0;
    this.session.forget(this);
    process.nextTick(() => this.emit('close'));
  }

  /** From the session: a DATA frame's payload. */
  onData(data: Buffer): void {
    // An empty DATA frame only opens the stream (announce()).
    if (this.destroyed || this.finReceived || data.length === 0) return;
    this.unacknowledged += data.length;
    if (this.unacknowledged > STREAM_WINDOW) {
      this.session.protocolError(`stream ${this.id} received more than its window of ${STREAM_WINDOW} bytes`);
      return;
    }
    if (this.paused || this.received.length > 0) this.hold(data);
    else this.take(data);
  }

  /**
   * Keeps a payload for the paused reader, charged to the budget. A payload
   * that is a small part of its read is copied, or it would keep the whole
   * read alive for as long as the reader stays paused.
   */
  private hold(data: Buffer): void {
    const kept = data.length * 2 < data.buffer.byteLength ? Buffer.from(data) : data;
    this.received.push(kept);
    const cost = kept.length + HELD_PAYLOAD_OVERHEAD;
    this.held += cost;
    this.session.held(cost);
  }

  private take(data: Buffer): void {
    this.taken += data.length;
    if (this.taken >= WINDOW_UPDATE_BYTES) {
      this.unacknowledged -= this.taken;
      this.session.send(this.id, WINDOW, this.taken);
      this.taken = 0;
    }
    if (this.reader) this.reader(data);
    else this.emit('data', data);
  }

  onFin(): void {
    if (this.destroyed || this.finReceived) return;
    this.finReceived = true;
    if (!this.paused && this.received.length === 0) this.ended();
  }

  private ended(): void {
    if (this.readableEnded || this.destroyed) return;
    this.readableEnded = true;
    this.emit('end');
    if (this.writableEnded && !this.finPending) this.close();
    else if (!this.allowHalfOpen) this.end();
  }

  onWindow(bytes: number): void {
    if (this.destroyed) return;
    this.sendWindow += bytes;
    this.sendUnsent();
  }

  /** Sends what the window and the session's socket allow of the writes that waited; FIN and 'drain' follow the last. */
  sendUnsent(): void {
    if (this.destroyed) return;
    if (this.session.congested) {
      if (this.unsent.length > 0) this.session.waitForSocket(this);
      return;
    }
    while (this.unsent.length > 0 && this.sendWindow > 0) {
      const buf = this.unsent[0]!;
      const now = Math.min(buf.length, this.sendWindow);
      this.sendData(buf.subarray(0, now));
      if (now === buf.length) this.unsent.shift();
      else this.unsent[0] = buf.subarray(now);
    }
    if (this.unsent.length > 0) return;
    if (this.finPending) {
      this.finPending = false;
      this.sendFin();
    }
    if (this.needDrain) {
      this.needDrain = false;
      this.emit('drain');
    }
  }

  /** From the session: the peer reset the stream, or the connection ended under it. */
  onReset(refused: boolean, message?: string): void {
    if (this.destroyed) return;
    // Closed first, so that an 'error' listener's destroy() sends no reset back.
    this.close();
    const error = new StreamResetError(message ?? (refused ? 'the peer refused the stream (it is going away)' : 'the peer reset the stream'), refused);
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

export interface MuxSessionOptions {
  /** Server side: each stream the client opens. Absent: the client side, which opens streams itself. */
  onStream?: (stream: MuxStream) => void;
  /** Why the session ended abnormally (a protocol error from the peer). */
  onError?: (message: string) => void;
  /** A session without streams for this long goes away (GOAWAY, then the connection ends). */
  idleMs?: number;
  /** What the bytes held for paused readers are charged to; default the process's (proxyMuxBudget). */
  budget?: MuxBudget;
}

/** One side of a tsmesh/mux connection. */
export class MuxSession {
  private readonly streams = new Map<number, MuxStream>();
  /** Client: the next id to open. Server: ids below it were opened already. */
  private nextId = 1;
  private frames: { id: number; type: number; payload: Payload | number | undefined; length: number }[] = [];
  private frameBytes = 0;
  private flushing = false;
  private partial: Buffer | undefined;
  /** Server: goAway() was called. Client: the peer said GOAWAY. */
  private goingAway = false;
  private idleTimer: NodeJS.Timeout | undefined;
  closed = false;
  readonly budget: MuxBudget;
  /** The socket read being handled held bytes for a paused reader. */
  private heldInRead = false;
  /** Not reading the socket until the budget has room. */
  private stalled = false;
  /**
   * The socket holds SOCKET_BACKLOG_BYTES or more the peer has not taken, or
   * this turn's frames do: DATA waits in the streams until it drains.
   */
  congested = false;
  private awaitingDrain = false;
  /** Streams with writes waiting for the socket to drain, in the order they wrote. */
  private readonly waitingForSocket = new Set<MuxStream>();

  constructor(
    readonly socket: Duplex,
    private readonly opts: MuxSessionOptions = {},
  ) {
    this.budget = opts.budget ?? proxyMuxBudget;
    const reads = copiedReads((d) => {
      this.onData(d);
      return true;
    });
    if (readInto(socket, reads)) {
      for (let b = socket.read() as Buffer | null; b !== null; b = socket.read() as Buffer | null) this.onData(b);
    } else socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => socket.destroy());
    socket.once('end', () => socket.end());
    socket.once('close', () => this.onClose());
    if (!this.stalled) socket.resume();
    this.idleIfEmpty();
  }

  private idleIfEmpty(): void {
    const ms = this.opts.idleMs;
    if (ms === undefined || this.streams.size > 0 || this.closed) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else {
      this.idleTimer = setTimeout(() => {
        if (this.streams.size === 0) this.goAway();
      }, ms);
      this.idleTimer.unref();
    }
  }

  /** Streams open now. */
  get size(): number {
    return this.streams.size;
  }

  /** A client may open streams: the connection is up and the peer has not said GOAWAY. */
  get usable(): boolean {
    return !this.closed && !this.goingAway;
  }

  /** Client: a new stream. */
  open(): MuxStream {
    if (!this.usable) throw new Error('the mux session is closed or going away');
    const s = new MuxStream(this, this.nextId, false);
    this.nextId += 2;
    this.streams.set(s.id, s);
    return s;
  }

  /**
   * Server: serves the streams open now and refuses any the client opens
   * from here on; the connection ends when the last one closes. Client: ends
   * the connection once its streams are done.
   */
  goAway(): void {
    if (this.goingAway || this.closed) return;
    this.goingAway = true;
    // The last stream the server serves: the highest it has taken.
    if (this.opts.onStream) this.send(Math.max(this.nextId - 2, 0), GOAWAY, undefined);
    this.endIfDone();
  }

  forget(stream: MuxStream): void {
    this.streams.delete(stream.id);
    this.waitingForSocket.delete(stream);
    this.endIfDone();
    this.idleIfEmpty();
  }

  private endIfDone(): void {
    if (this.goingAway && this.streams.size === 0 && !this.closed) {
      this.flush();
      this.socket.end();
    }
  }

  /** Queues a frame; the frames of one turn of the event loop are written together. */
  send(id: number, type: number, payload: Payload | number | undefined): void {
    if (this.closed) return;
    const length = payloadLength(type, payload);
    this.frames.push({ id, type, payload, length });
    this.frameBytes += HEADER_BYTES + length;
    if (this.frameBytes >= SOCKET_BACKLOG_BYTES) this.congested = true;
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushing = false;
    if (this.closed || this.frames.length === 0) return;
    const out = Buffer.allocUnsafe(this.frameBytes);
    let at = 0;
    for (const f of this.frames) {
      const p = f.payload;
      out.writeUInt32BE(f.id, at);
      out.writeUInt32BE(((f.type << 24) | f.length) >>> 0, at + 4);
      at += HEADER_BYTES;
      if (p === undefined) continue;
      if (typeof p === 'number') at = f.type === RST ? out.writeUInt8(p, at) : out.writeUInt32BE(p, at);
      else if (typeof p === 'string') at += out.write(p, at, 'latin1');
      else at += p.copy(out, at);
    }
    this.frames = [];
    this.frameBytes = 0;
    this.socket.write(out);
    if (this.socket.writableLength >= SOCKET_BACKLOG_BYTES) {
      this.congested = true;
      if (!this.awaitingDrain) {
        this.awaitingDrain = true;
        this.socket.once('drain', () => this.drained());
      }
    } else if (this.congested && !this.awaitingDrain) this.drained();
  }

  waitForSocket(stream: MuxStream): void {
    this.waitingForSocket.add(stream);
  }

  private drained(): void {
    this.awaitingDrain = false;
    this.congested = false;
    const streams = [...this.waitingForSocket];
    this.waitingForSocket.clear();
    for (const s of streams) s.sendUnsent();
  }

  /** A stream holds `bytes` more for its paused reader. */
  held(bytes: number): void {
    this.budget.charge(bytes);
    this.heldInRead = true;
  }

  /** From the budget: it has room again. */
  readAgain(): void {
    if (!this.stalled || this.closed) return;
    this.stalled = false;
    this.socket.resume();
  }

  /** The peer broke the protocol: the session ends, and every stream with it. */
  protocolError(message: string): void {
    if (this.closed) return;
    this.opts.onError?.(message);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.heldInRead = false;
    this.handleRead(chunk);
    // This read added to an overspent budget: the peer waits (TCP) until memory frees.
    if (this.heldInRead && this.budget.spent && !this.closed) {
      this.stalled = true;
      this.budget.stall(this);
      this.socket.pause();
    }
  }

  private handleRead(chunk: Buffer): void {
    let data = chunk;
    if (this.partial) {
      data = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    let i = 0;
    while (data.length - i >= HEADER_BYTES && !this.closed) {
      const id = data.readUInt32BE(i);
      const word = data.readUInt32BE(i + 4);
      const type = word >>> 24;
      const length = word & 0xffffff;
      if (length > MAX_FRAME_PAYLOAD) {
        this.protocolError(`a frame of ${length} bytes (at most ${MAX_FRAME_PAYLOAD})`);
        return;
      }
      if (data.length - i - HEADER_BYTES < length) break;
      const payload = data.subarray(i + HEADER_BYTES, i + HEADER_BYTES + length);
      i += HEADER_BYTES + length;
      this.onFrame(id, type, payload);
    }
    if (i < data.length && !this.closed) this.partial = Buffer.from(data.subarray(i));
  }

  private onFrame(id: number, type: number, payload: Buffer): void {
    if (type > GOAWAY) {
      this.protocolError(`a frame of unknown type ${type}`);
      return;
    }
    if (type === GOAWAY) {
      if (this.opts.onStream) this.protocolError('GOAWAY from the client');
      else {
        this.goingAway = true;
        this.endIfDone();
      }
      return;
    }
    let s = this.streams.get(id);
    if (s === undefined) {
      if (this.opts.onStream && id % 2 !== 1) {
        this.protocolError(`stream id ${id} is even (a client opens odd ones)`);
        return;
      }
      // Frames of a stream already closed here (a reset crossing the peer's frames) are dropped.
      if (type !== DATA || !this.opts.onStream || id < this.nextId) return;
      this.nextId = id + 2;
      if (this.goingAway || this.streams.size >= MAX_STREAMS) {
        this.send(id, RST, RESET_REFUSED);
        return;
      }
      if (this.budget.spent) {
        // No new work while memory is short; the client may send it again.
        this.budget.refusedStreams++;
        this.send(id, RST, RESET_REFUSED);
        return;
      }
      s = new MuxStream(this, id, true);
      this.streams.set(id, s);
      this.opts.onStream(s);
    }
    if (type === DATA) s.onData(payload);
    else if (type === FIN) s.onFin();
    else if (type === RST) s.onReset(payload.length > 0 && payload[0] === RESET_REFUSED);
    else if (payload.length === 4) s.onWindow(payload.readUInt32BE(0));
    else this.protocolError(`a WINDOW frame of ${payload.length} bytes`);
  }

  private onClose(): void {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.budget.forget(this);
    this.waitingForSocket.clear();
    this.frames = [];
    for (const s of [...this.streams.values()]) s.onReset(false, 'the mux connection closed');
    this.streams.clear();
  }
}
