// HTTP/1.1 bodies: a decoder that takes the bytes after a head and hands out
// the body's data (Content-Length, chunked, or until close), and the encoders
// the proxy writes with. Chunk extensions are read and dropped; the trailer
// fields of a chunked body are kept (`trailers`) and written again after the
// last chunk of a chunked body the proxy sends on, framing fields aside.
import type { Writable } from 'node:stream';
import { bufferOf, emptyHeaders, streamOf, type Body, type TrailerSource } from '../types.js';
import { HttpParseError, type Framing } from './head.js';

/** A chunk-size line or a trailer section longer than these is refused. */
const MAX_CHUNK_LINE = 1024;
const MAX_TRAILER_BYTES = 64 * 1024;

const enum State {
  Length,
  Close,
  Size,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

export class BodyDecoder {
  private state: State;
  private remaining = 0;
  private line = '';
  private trailerBytes = 0;
  /** The trailer fields of a chunked body, once its last chunk has come (lowercased names). */
  trailers: Record<string, string> | undefined;

  constructor(
    framing: Framing,
    private readonly error: 400 | 502,
  ) {
    this.state = framing.kind === 'length' ? State.Length : framing.kind === 'chunked' ? State.Size : framing.kind === 'close' ? State.Close : State.Done;
    if (framing.kind === 'length') this.remaining = framing.length;
    if (this.state === State.Length && this.remaining === 0) this.state = State.Done;
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  /** The body ends when the connection does (close-delimited). */
  get untilClose(): boolean {
    return this.state === State.Close;
  }

  /**
   * Reads body bytes from buf[start..]; calls onData with each piece of data
   * (slices of buf); returns where it stopped: the end of buf, or the first
   * byte after the body once `done`.
   */
  feed(buf: Buffer, start: number, onData: (data: Buffer) => void): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case State.Done:
          return i;
        case State.Close:
          onData(i === 0 ? buf : buf.subarray(i));
          return n;
        case State.Length:
        case State.Data: {
          const take = Math.min(this.remaining, n - i);
          onData(i === 0 && take === n ? buf : buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = this.state === State.Length ? State.Done : State.DataCr;
          break;
        }
        case State.DataCr:
          if (buf[i++] !== 0x0d) throw new HttpParseError(this.error, 'a chunk is not followed by CRLF');
          this.state = State.DataLf;
          break;
        case State.DataLf:
          if (buf[i++] !== 0x0a) throw new HttpParseError(this.error, 'a chunk is not followed by CRLF');
          this.state = State.Size;
          break;
        case State.Size:
        case State.Trailer: {
          const lf = buf.indexOf(0x0a, i);
          const end = lf === -1 ? n : lf;
          this.line += buf.toString('latin1', i, end);
          if (this.state === State.Size && this.line.length > MAX_CHUNK_LINE) throw new HttpParseError(this.error, 'a chunk-size line is too long');
          if (this.state === State.Trailer && (this.trailerBytes += end - i + 1) > MAX_TRAILER_BYTES) throw new HttpParseError(this.error, 'the trailer section is too long');
          i = lf === -1 ? n : lf + 1;
          if (lf === -1) break;
          if (!this.line.endsWith('\r')) throw new HttpParseError(this.error, 'a line of a chunked body does not end with CRLF');
          const line = this.line.slice(0, -1);
          this.line = '';
          if (this.state === State.Trailer) {
            if (line === '') this.state = State.Done;
            else this.trailerField(line);
            break;
          }
          const semi = line.indexOf(';');
          const hex = (semi === -1 ? line : line.slice(0, semi)).trimEnd();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new HttpParseError(this.error, `bad chunk size ${JSON.stringify(hex.slice(0, 20))}`);
          this.remaining = parseInt(hex, 16);
          this.state = this.remaining === 0 ? State.Trailer : State.Data;
          break;
        }
      }
    }
    return i;
  }

  /** Keeps one trailer line; a line that is not a field, or a field that frames or routes a message, is dropped. */
  private trailerField(line: string): void {
    const colon = line.indexOf(':');
    if (colon <= 0) return;
    const name = line.slice(0, colon).toLowerCase();
    if (!TOKEN.test(name) || NOT_TRAILERS.has(name)) return;
    const value = line.slice(colon + 1).trim();
    if (/[\0\r\n]/.test(value)) return;
    // Names are data: an object that inherits nothing (a field named constructor or __proto__ is one like any other).
    const fields = (this.trailers ??= emptyHeaders<Record<string, string>>());
    fields[name] = fields[name] === undefined ? value : `${fields[name]}, ${value}`;
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** Fields a trailer section must not carry (RFC 9110 6.5.1): framing, routing, and the connection's own. */
const NOT_TRAILERS: ReadonlySet<string> = new Set([
  'content-length',
  'transfer-encoding',
  'host',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'content-type',
  'content-encoding',
  'content-range',
  'authorization',
  'set-cookie',
  'cache-control',
  'expect',
  'max-forwards',
  'pragma',
  'range',
]);

/** The end of a chunked body: the last chunk, these trailer fields (those a trailer may carry), and the empty line. */
export function lastChunkWith(trailers: Record<string, string | string[] | undefined> | undefined): string {
  let out = '0\r\n';
  if (trailers) {
    for (const [k, v] of Object.entries(trailers)) {
      const name = k.toLowerCase();
      if (v === undefined || !TOKEN.test(name) || NOT_TRAILERS.has(name) || name.startsWith(':')) continue;
      for (const one of typeof v === 'string' ? [v] : v) if (!/[\0\r\n]/.test(one)) out += `${name}: ${one}\r\n`;
    }
  }
  return `${out}\r\n`;
}

/**
 * One buffer for what goes out next: an optional head (latin1) and a piece of
 * body, framed as a chunk when `chunked`. Over TLS every write is a record
 * and an encryption call, so the proxy writes a head with the body's first
 * bytes and a chunk with its framing, each as one write.
 */
export function frame(head: string | undefined, data: Buffer, chunked: boolean): Buffer {
  const size = chunked ? `${data.length.toString(16)}\r\n` : '';
  const headLength = head === undefined ? 0 : head.length;
  const out = Buffer.allocUnsafe(headLength + size.length + data.length + (chunked ? 2 : 0));
  let at = 0;
  if (head !== undefined) at += out.write(head, 0, 'latin1');
  if (chunked) at += out.write(size, at, 'latin1');
  at += data.copy(out, at);
  if (chunked) {
    out[at++] = 0x0d;
    out[at] = 0x0a;
  }
  return out;
}

/** The end of a chunked body (no trailers), after an optional head. */
export function lastChunk(head: string | undefined): string {
  return head === undefined ? '0\r\n\r\n' : `${head}0\r\n\r\n`;
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/**
 * Writes a message's body to `out` after its `head`, which goes out with the
 * body's first bytes: as Content-Length bytes, or chunked. A body in memory
 * (MemoryBody) is one write; a stream is written as it comes, paused while
 * `out` is full. `done` is called once: with no error when everything is
 * written, with one (the body destroyed) when the body fails or ends early.
 * A chunked body ends with `trailers`, read once the body has ended. The
 * server writes responses with it, the forwarder requests.
 */
export function writeBody(out: Writable, head: string | undefined, from: Body, chunked: boolean, done: (e?: Error) => void, trailers?: TrailerSource): void {
  const buffered = bufferOf(from);
  if (buffered !== undefined) {
    const end = trailers === undefined ? LAST_CHUNK : Buffer.from(lastChunkWith(trailers()), 'latin1');
    out.write(chunked ? Buffer.concat([frame(head, buffered, true), end]) : frame(head, buffered, false));
    done();
    return;
  }
  const body = streamOf(from);
  let pending = head;
  let settled = false;
  const finish = (e?: Error): void => {
    if (settled) return;
    settled = true;
    body.off('data', onData);
    body.off('end', onEnd);
    body.off('error', finish);
    body.off('close', onClose);
    out.off('drain', onDrain);
    if (e) body.destroy();
    done(e);
  };
  const onData = (d: Buffer): void => {
    const ok = out.write(frame(pending, d, chunked));
    pending = undefined;
    if (!ok) body.pause();
  };
  const onDrain = (): void => {
    body.resume();
  };
  const onEnd = (): void => {
    // The trailers are known once the body has ended.
    if (chunked) out.write(trailers === undefined ? lastChunk(pending) : `${pending ?? ''}${lastChunkWith(trailers())}`, 'latin1');
    else if (pending !== undefined) out.write(pending, 'latin1');
    finish();
  };
  const onClose = (): void => {
    if (!body.readableEnded) finish(new Error('the body ended before all of it was read'));
  };
  body.on('data', onData);
  body.once('end', onEnd);
  body.once('error', finish);
  body.once('close', onClose);
  out.on('drain', onDrain);
}
