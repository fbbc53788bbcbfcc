// HTTP/1.1 bodies: a decoder that takes the bytes after a head and hands out
// the body's data (Content-Length, chunked, or until close), and the encoders
// the proxy writes with. Chunk extensions are read and dropped; the trailer
// fields of a chunked body are kept (`trailers`) and written again after the
// last chunk of a chunked body the proxy sends on, framing fields aside.
//
// The chunked framing is read byte by byte and refused at the first byte
// that cannot belong to it (RFC 9112 7.1), so that a malformed body is an
// error as soon as it arrives, never a wait for a line end that may not come.
// Where HAProxy and nginx are lenient the decoder is as strict as the
// stricter of them or more, since two parsers that disagree on where a body
// ends are how requests are smuggled: every line ends in CRLF (a bare LF or
// a bare CR is refused), the chunk size is hex digits alone (no sign, prefix
// or leading whitespace, and whitespace after it only before a ";"), an
// extension holds no control character but HTAB, and a trailer line is a
// field (a token, a colon, a value without control characters; no
// whitespace before the colon, no obs-fold). Each refusal says which rule
// was broken.
import type { Writable } from 'node:stream';
import { bufferOf, emptyHeaders, streamOf, type Body, type TrailerSource } from '../types.js';
import { HttpParseError, type Framing } from './head.js';

/** A chunk-size line (extensions included) or a trailer section longer than these is refused. */
export const MAX_CHUNK_LINE = 1024;
export const MAX_TRAILER_BYTES = 64 * 1024;
/** The largest chunk size taken: larger ones are refused (nginx refuses above 2^63 - 1; a number here is exact up to 2^53 - 1). */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;

const enum State {
  Length,
  Close,
  /** The first byte of a chunk-size line: a hex digit. */
  Size,
  /** More hex digits, or what may follow them: ";", whitespace before one, CR. */
  SizeDigits,
  /** Whitespace after the size: a ";" must come. */
  SizeSpace,
  /** A chunk extension, up to CR. */
  Extension,
  /** The CR of a chunk-size line came: LF. */
  SizeLf,
  Data,
  DataCr,
  DataLf,
  /** The start of a trailer line: a field name, or CR for the end of the section. */
  Trailer,
  TrailerName,
  TrailerValue,
  /** The CR of a trailer line came: LF. */
  TrailerLf,
  /** The CR of the empty line came: LF, and the body is over. */
  EndLf,
  Done,
}

/** Bytes as a reader sees them in a message: "\r", "\x01", "z". */
function shown(c: number): string {
  return c >= 0x20 && c < 0x7f ? JSON.stringify(String.fromCharCode(c)) : `0x${c.toString(16).padStart(2, '0')}`;
}

/** Hex digit values by byte, -1 for any other. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;
/** Bytes refused in an extension or a field value: controls but HTAB, and DEL. */
const CONTROL = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) if (c !== 0x09) CONTROL[c] = 1;
CONTROL[0x7f] = 1;
/** tchar (RFC 9110 5.6.2): the bytes of a field name. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** Optional whitespace at either end of a field value: spaces and tabs only (obs-text such as 0xa0 is part of the value). */
const OWS_AROUND = /^[ \t]+|[ \t]+$/g;
const CR = 0x0d;
const LF = 0x0a;
const isSpace = (c: number): boolean => c === 0x20 || c === 0x09;

export class BodyDecoder {
  private state: State;
  private remaining = 0;
  /** Bytes of the chunk-size line so far. */
  private lineBytes = 0;
  /** The trailer line so far, from the pieces before the current buffer. */
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

  /** The chunked framing broke a rule: the message is refused (400 for a request, 502 for a response). */
  private refuse(what: string): never {
    throw new HttpParseError(this.error, `malformed chunked body: ${what} (RFC 9112 7.1)`);
  }

  /**
   * Reads body bytes from buf[start..]; calls onData with each piece of data
   * (slices of buf); returns where it stopped: the end of buf, or the first
   * byte after the body once `done`. Throws HttpParseError at the first byte
   * the framing does not allow.
   */
  feed(buf: Buffer, start: number, onData: (data: Buffer) => void): number {
    let i = start;
    const n = buf.length;
    /** Where the current trailer line begins in buf (0 when it began in an earlier one). */
    let lineFrom = start;
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
        case State.DataCr: {
          const c = buf[i++]!;
          if (c !== CR) this.refuse(c === LF ? 'a chunk\'s data is followed by a bare LF, not CRLF' : `a chunk is not followed by CRLF (${shown(c)} after its data: the chunk is longer than its size says)`);
          this.state = State.DataLf;
          break;
        }
        case State.DataLf: {
          const c = buf[i++]!;
          if (c !== LF) this.refuse(`a chunk is not followed by CRLF (a bare CR, then ${shown(c)})`);
          this.state = State.Size;
          this.lineBytes = 0;
          this.remaining = 0;
          break;
        }
        case State.Size:
        case State.SizeDigits:
        case State.SizeSpace:
        case State.Extension:
        case State.SizeLf:
          i = this.sizeLine(buf, i);
          break;
        case State.Trailer:
        case State.TrailerName:
        case State.TrailerValue:
        case State.TrailerLf:
        case State.EndLf: {
          if (this.state === State.Trailer) lineFrom = i;
          const at = i;
          i = this.trailerLine(buf, i, lineFrom);
          if ((this.trailerBytes += i - at) > MAX_TRAILER_BYTES) this.refuse(`the trailer section is longer than ${MAX_TRAILER_BYTES} bytes`);
          // A line that goes on past this buffer: what came of it is kept for its end.
          if (i === n && (this.state === State.TrailerName || this.state === State.TrailerValue || this.state === State.TrailerLf)) this.line += buf.toString('latin1', lineFrom, n);
          break;
        }
      }
    }
    return i;
  }

  /** Reads a chunk-size line from buf[i..]: its size, its extensions and its CRLF. Returns where it stopped. */
  private sizeLine(buf: Buffer, from: number): number {
    let i = from;
    const n = buf.length;
    for (; i < n; i++) {
      if (++this.lineBytes > MAX_CHUNK_LINE) this.refuse(`a chunk-size line is longer than ${MAX_CHUNK_LINE} bytes`);
      const c = buf[i]!;
      switch (this.state) {
        case State.Size:
          if (HEX[c]! < 0) {
            if (c === CR || c === LF) this.refuse('an empty chunk-size line');
            if (isSpace(c)) this.refuse('whitespace before a chunk size');
            this.refuse(`bad chunk size: ${shown(c)} where a hex digit must be`);
          }
          this.remaining = HEX[c]!;
          this.state = State.SizeDigits;
          break;
        case State.SizeDigits: {
          const d = HEX[c]!;
          if (d >= 0) {
            if (this.remaining > (MAX_CHUNK_SIZE - d) / 16) this.refuse(`the chunk size is larger than ${MAX_CHUNK_SIZE} bytes`);
            this.remaining = this.remaining * 16 + d;
          } else if (c === 0x3b) this.state = State.Extension;
          else if (isSpace(c)) this.state = State.SizeSpace;
          else if (c === CR) this.state = State.SizeLf;
          else if (c === LF) this.refuse('a chunk-size line ends in a bare LF, not CRLF');
          else this.refuse(`bad chunk size: ${shown(c)} after its hex digits`);
          break;
        }
        case State.SizeSpace:
          if (c === 0x3b) this.state = State.Extension;
          else if (c === CR || c === LF) this.refuse('whitespace after a chunk size with no extension after it');
          else if (!isSpace(c)) this.refuse(`bad chunk size: ${shown(c)} after its hex digits and whitespace`);
          break;
        case State.Extension:
          if (c === CR) this.state = State.SizeLf;
          else if (c === LF) this.refuse('a chunk-size line ends in a bare LF, not CRLF');
          else if (CONTROL[c] === 1) this.refuse(`a control character (${shown(c)}) in a chunk extension`);
          break;
        case State.SizeLf:
          if (c !== LF) this.refuse(`a bare CR in a chunk-size line (${shown(c)} after it)`);
          this.state = this.remaining === 0 ? State.Trailer : State.Data;
          return i + 1;
      }
    }
    return i;
  }

  /** Reads a trailer line, or the empty line that ends the section, from buf[i..] (the line began at buf[lineFrom], or before buf). Returns where it stopped. */
  private trailerLine(buf: Buffer, from: number, lineFrom: number): number {
    let i = from;
    const n = buf.length;
    for (; i < n; i++) {
      const c = buf[i]!;
      switch (this.state) {
        case State.Trailer:
          if (c === CR) this.state = State.EndLf;
          else if (TCHAR[c] === 1) this.state = State.TrailerName;
          else if (c === LF) this.refuse('a trailer section ends in a bare LF, not CRLF');
          else if (isSpace(c)) this.refuse('a trailer line begins with whitespace (obs-fold is refused)');
          else this.refuse(`a trailer line begins with ${shown(c)}, not a field name`);
          break;
        case State.TrailerName:
          if (c === 0x3a) this.state = State.TrailerValue;
          else if (c === CR || c === LF) this.refuse(`a trailer line without a colon: ${JSON.stringify(this.line + buf.toString('latin1', lineFrom, i))}`);
          else if (isSpace(c)) this.refuse(`whitespace in or after the name of a trailer field: ${JSON.stringify(this.line + buf.toString('latin1', lineFrom, i + 1))}`);
          else if (TCHAR[c] !== 1) this.refuse(`${shown(c)} in the name of a trailer field`);
          break;
        case State.TrailerValue:
          if (c === CR) this.state = State.TrailerLf;
          else if (c === LF) this.refuse('a trailer line ends in a bare LF, not CRLF');
          else if (CONTROL[c] === 1) this.refuse(`a control character (${shown(c)}) in the value of a trailer field`);
          break;
        case State.TrailerLf:
          if (c !== LF) this.refuse(`a bare CR in a trailer field (${shown(c)} after it)`);
          // The line without its CRLF (its CR may have come in an earlier buffer).
          this.trailerField((this.line + buf.toString('latin1', lineFrom, i)).slice(0, -1));
          this.line = '';
          this.state = State.Trailer;
          return i + 1;
        case State.EndLf:
          if (c !== LF) this.refuse(`a bare CR at the end of the trailer section (${shown(c)} after it)`);
          this.state = State.Done;
          return i + 1;
      }
    }
    return i;
  }

  /** Keeps one trailer field (`name: value`, checked); a field that frames or routes a message is dropped. */
  private trailerField(line: string): void {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (NOT_TRAILERS.has(name)) return;
    const value = line.slice(colon + 1).replace(OWS_AROUND, '');
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
 * body's first bytes when they are at hand (alone when they are not): as
 * Content-Length bytes, or chunked. A body in memory (MemoryBody) is one
 * write; a stream is written as it comes, paused while `out` is full. `done` is called once: with no error when everything is
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
  if (body.destroyed) {
    // Failed before anyone read it (its producer saw it break first): nothing of it can go out.
    done(body.errored ?? new Error('the body ended before all of it was read'));
    return;
  }
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
  // The head waits for the body's first bytes only when they are here already (they flow before this
  // runs): else it goes alone, or the other side would see no head until the body began (a long poll's,
  // an event stream's), and the response head timeout of the proxy before this one would pass.
  if (pending !== undefined) setImmediate(sendHead);
  function sendHead(): void {
    if (settled || pending === undefined) return;
    out.write(pending, 'latin1');
    pending = undefined;
  }
}
