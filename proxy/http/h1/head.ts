// HTTP/1.1 message heads (RFC 9112), parsed in one pass over the head's text:
// the start line, the header fields with hop-by-hop ones left out, and how
// the body is framed. Strict where leniency lets two parsers disagree about
// where a message ends (request smuggling): Transfer-Encoding with
// Content-Length, a bad or conflicting Content-Length, obs-fold, whitespace
// before a colon, control characters; each is a clear error with a status.
import type { IncomingHttpHeaders } from 'node:http';
import { emptyHeaders } from '../types.js';

/** A message the proxy will not read; `status` is what a client gets for it. */
export class HttpParseError extends Error {
  override name = 'HttpParseError';
  constructor(
    readonly status: 400 | 431 | 501 | 502,
    message: string,
  ) {
    super(message);
  }
}

/** none: no body; length: Content-Length bytes; chunked; close: until the connection closes (responses only). */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

interface Head {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Lowercased names; hop-by-hop fields removed; repeated fields joined with ", " (set-cookie kept as a list). */
  headers: IncomingHttpHeaders;
  framing: Framing;
  /** Whether the sender lets the connection carry another message after this one. */
  keepAlive: boolean;
}

export interface RequestHead extends Head {
  method: string;
  target: string;
  /**
   * The client sent `Expect: 100-continue` with a body, in HTTP/1.1 (RFC 9110
   * 10.1.1: an HTTP/1.0 request's is ignored): it waits for a 100 before it
   * sends the body. The field stays in `headers` to go on toward the app, whose
   * 100 comes back; any other case drops it.
   */
  expectContinue: boolean;
  /** The protocols of an `Upgrade` the Connection header names (e.g. "websocket"); the field itself is hop-by-hop and not in `headers`. */
  upgrade: string | undefined;
}

export interface ResponseHead extends Head {
  status: number;
  /** A 101's `Upgrade` field: the protocol the connection switched to (hop-by-hop, not in `headers`). */
  upgrade: string | undefined;
}


// Character classes, by char code: tchar (RFC 9110 5.6.2) for names, with
// upper-case letters marked (a name is lowercased only when it has one);
// field values: visible characters, obs-text, space and tab, no other
// controls. One pass over each line with a table lookup per character is
// several times faster than a regular expression per name and per value.
const C_BAD = 0;
const C_TCHAR = 1;
const C_UPPER = 2;
const CHAR_CLASS = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") CHAR_CLASS[c.charCodeAt(0)] = C_TCHAR;
for (let c = 0x41; c <= 0x5a; c++) CHAR_CLASS[c] = C_UPPER;
/** Field-value octets that are refused: controls but tab, and DEL. */
const BAD_IN_VALUE = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) if (c !== 0x09) BAD_IN_VALUE[c] = 1;
BAD_IN_VALUE[0x7f] = 1;

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || CHAR_CLASS[c] === C_BAD) return false;
  }
  return true;
}

const DIGITS_3 = /^\d{3}$/;
// eslint-disable-next-line no-control-regex -- finding control characters is what it is for
const BAD_TARGET_CHAR = /[\x00-\x20\x7f]/;
/** Visible bytes a request target may not hold (RFC 9112 3.2, RFC 3986): a fragment's "#", and anything above 0x7e. */
const NOT_IN_TARGET = /[#\x80-\xff]/;

const isOws = (c: number): boolean => c === 0x20 || c === 0x09;

interface Fields {
  headers: IncomingHttpHeaders;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
  connection: string | undefined;
  expect: string | undefined;
  upgrade: string | undefined;
}

function parseFields(text: string, from: number, error: 400 | 502): Fields {
  const headers = emptyHeaders();
  const f: Fields = { headers, contentLength: undefined, transferEncoding: undefined, connection: undefined, expect: undefined, upgrade: undefined };
  let pos = from;
  const n = text.length;
  while (pos < n) {
    // The name, up to the colon: every character a tchar.
    let upper = false;
    let colon = pos;
    for (; colon < n; colon++) {
      const cls = CHAR_CLASS[text.charCodeAt(colon)];
      if (cls === C_TCHAR) continue;
      if (cls === C_UPPER) {
        upper = true;
        continue;
      }
      break;
    }
    if (colon === pos || colon === n || text.charCodeAt(colon) !== 0x3a) throw badLine(text, pos, error);
    // The value, to the end of the line: no control characters, optional whitespace trimmed.
    let vs = colon + 1;
    while (vs < n && isOws(text.charCodeAt(vs))) vs++;
    let end = vs;
    for (; end < n; end++) {
      const c = text.charCodeAt(end);
      if (c === 0x0d || BAD_IN_VALUE[c] === 1) break;
    }
    if (end < n && (text.charCodeAt(end) !== 0x0d || text.charCodeAt(end + 1) !== 0x0a)) throw new HttpParseError(error, `the value of header ${text.slice(pos, colon)} holds a control character`);
    let ve = end;
    while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
    const value = text.slice(vs, ve);
    const name = upper ? text.slice(pos, colon).toLowerCase() : text.slice(pos, colon);
    pos = end + 2;
    switch (name) {
      case 'content-length':
        if (f.contentLength !== undefined && f.contentLength !== value) throw new HttpParseError(error, `conflicting Content-Length values ${f.contentLength} and ${value}`);
        f.contentLength = value;
        // Kept out of `headers`: each parser puts back what its framing allows (deleting a key would slow the object down).
        continue;
      case 'transfer-encoding':
        f.transferEncoding = f.transferEncoding === undefined ? value : `${f.transferEncoding}, ${value}`;
        continue;
      case 'connection':
        f.connection = f.connection === undefined ? value : `${f.connection}, ${value}`;
        continue;
      case 'expect':
        f.expect = value;
        continue;
      case 'upgrade':
        f.upgrade = f.upgrade === undefined ? value : `${f.upgrade}, ${value}`;
        continue;
      case 'host':
        // RFC 9112 3.2: a request with more than one Host line is refused (which of them would the app take?).
        if (error === 400 && headers.host !== undefined) throw new HttpParseError(400, 'two Host header lines: a request carries exactly one Host (RFC 9112 3.2)');
        break;
      case 'te':
        // Hop-by-hop: the transfer codings it lists are this connection's. Its "trailers" goes on (RFC 9110
        // 10.1.4): the client reads trailer fields, which the proxy carries end to end (gRPC servers check it).
        if (error === 400 && hasToken(value, 'trailers')) headers.te = 'trailers';
        continue;
      case 'keep-alive':
      case 'proxy-connection':
      case 'trailer':
      case 'http2-settings':
        // Hop-by-hop (types.ts HOP_BY_HOP): never forwarded.
        continue;
    }
    const prev = headers[name];
    if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[name] = `${prev}, ${value}`;
  }
  if (f.connection !== undefined) {
    // Fields the Connection header names are hop-by-hop too.
    for (const token of f.connection.toLowerCase().split(',')) {
      const t = token.trim();
      // A TE kept above is what the proxy says for itself; the forwarder names it in its own Connection field.
      if (t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'te') Reflect.deleteProperty(headers, t);
    }
  }
  return f;
}

/** The error for a header line whose name is not a token followed by a colon. */
function badLine(text: string, pos: number, error: 400 | 502): HttpParseError {
  let end = text.indexOf('\r\n', pos);
  if (end === -1) end = text.length;
  const colon = text.indexOf(':', pos);
  if (colon === -1 || colon > end) return new HttpParseError(error, `a header line has no colon: ${JSON.stringify(text.slice(pos, Math.min(end, pos + 40)))}`);
  return new HttpParseError(error, `bad header name ${JSON.stringify(text.slice(pos, colon))} (whitespace before the colon, folded lines and control characters are refused)`);
}

function hasToken(list: string | undefined, token: string): boolean {
  if (list === undefined) return false;
  for (const t of list.toLowerCase().split(',')) if (t.trim() === token) return true;
  return false;
}

function keepAliveOf(minor: number, connection: string | undefined): boolean {
  if (hasToken(connection, 'close')) return false;
  return minor === 1 || hasToken(connection, 'keep-alive');
}

function parseLength(value: string, error: 400 | 502): number {
  if (value.length === 0) throw new HttpParseError(error, 'empty Content-Length');
  // At most 15 digits: every such number is exact as a double.
  if (value.length > 15) throw new HttpParseError(error, `bad Content-Length ${JSON.stringify(value)}`);
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) throw new HttpParseError(error, `bad Content-Length ${JSON.stringify(value)}`);
    n = n * 10 + d;
  }
  return n;
}

function version(text: string, at: number, error: 400 | 502): number {
  if (!text.startsWith('HTTP/1.', at) || text.length < at + 8) throw new HttpParseError(error, `not an HTTP/1.x message: ${JSON.stringify(text.slice(0, 40))}`);
  const minor = text.charCodeAt(at + 7) - 48;
  if (minor !== 0 && minor !== 1) throw new HttpParseError(error, `unsupported version ${text.slice(at, at + 8)}`);
  return minor;
}

/**
 * A Host value (RFC 9110 7.2): uri-host [ ":" port ] of RFC 3986, an
 * IP-literal in brackets or a name of unreserved, percent-encoded and
 * sub-delims characters, less the comma: RFC 3986 lets a reg-name hold one,
 * but no DNS name or address does, and a comma is what joins two Host lines
 * into one value (a list is two hosts, RFC 9110 5.3). Empty is valid: the
 * Host of a target without an authority.
 */
const HOST = /^(?:(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+;=:]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?)?$/;

/** scheme "://" authority rest: an absolute-form request target (RFC 9112 3.2.2), the form a client sends to a forward proxy. */
const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/;

/**
 * Checks the Host field and the request target together (RFC 9112 3.2), and
 * returns the target the request goes on with.
 *  - Host: one line (parseFields), a valid value, and present in HTTP/1.1
 *    whatever the target's form; each of these is a 400 otherwise, as RFC
 *    9112 3.2 has a server answer.
 *  - origin-form ("/path?query") goes on as it is; so does asterisk-form
 *    ("*", OPTIONS only).
 *  - CONNECT is refused (501): a 2xx to it would turn the connection into
 *    a tunnel the HTTP path does not join (nginx refuses it too); a forward
 *    proxy behind the mesh is carried on a port declared tcp.
 *  - absolute-form ("http://authority/path?query", the form a client sends
 *    a forward proxy): RFC 9112 3.2.2 has a server ignore the Host field and
 *    use the target's authority, and a proxy replace Host with it when it
 *    forwards. So the target's authority becomes the request's Host (what
 *    route matches and the app see) and the target goes on in origin-form,
 *    "/" for an empty path. Only http and https are taken, with a host and
 *    no userinfo (RFC 9110 4.2.1, 4.2.4).
 *  - Anything else is no request target: 400.
 */
function requestTarget(method: string, target: string, headers: IncomingHttpHeaders, minor: number): string {
  const host = headers.host;
  if (host !== undefined && !HOST.test(host))
    throw new HttpParseError(400, `invalid Host ${JSON.stringify(host.slice(0, 80))}: Host is one host[:port], without a list, userinfo, path or spaces (RFC 9110 7.2)`);
  if (host === undefined && minor === 1) throw new HttpParseError(400, 'an HTTP/1.1 request without a Host header: every HTTP/1.1 request carries one, naming the service (RFC 9112 3.2)');
  if (method === 'CONNECT')
    throw new HttpParseError(501, 'CONNECT is not carried by the mesh\'s HTTP path (its tunnel would not be joined); to carry a forward proxy, declare its port tcp (appProtocol tcp)');
  if (target.charCodeAt(0) === 0x2f) return target;
  if (target === '*' && method === 'OPTIONS') return target;
  const absolute = ABSOLUTE_FORM.exec(target);
  if (absolute === null) throw new HttpParseError(400, `bad request target ${JSON.stringify(target.slice(0, 80))}: a path starts with "/", or the target is a whole http:// URL (RFC 9112 3.2)`);
  const [, scheme, authority, rest] = absolute as unknown as [string, string, string, string];
  const s = scheme.toLowerCase();
  if (s !== 'http' && s !== 'https') throw new HttpParseError(400, `request target ${JSON.stringify(target.slice(0, 80))}: only http and https URLs are served`);
  if (authority.includes('@')) throw new HttpParseError(400, `request target ${JSON.stringify(target.slice(0, 80))}: userinfo ("user@") in a URL is refused (RFC 9110 4.2.4)`);
  if (authority === '' || authority.charCodeAt(0) === 0x3a || !HOST.test(authority))
    throw new HttpParseError(400, `request target ${JSON.stringify(target.slice(0, 80))}: its authority is not a host[:port] (RFC 9110 4.2.1)`);
  headers.host = authority;
  return rest === '' ? '/' : rest.charCodeAt(0) === 0x2f ? rest : `/${rest}`;
}

/** `text`: the head as latin1, without the final blank line. */
export function parseRequestHead(text: string): RequestHead {
  const lineEnd = text.indexOf('\r\n');
  const line = lineEnd === -1 ? text : text.slice(0, lineEnd);
  const sp1 = line.indexOf(' ');
  const sp2 = line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.length !== sp2 + 9) throw new HttpParseError(400, `bad request line ${JSON.stringify(line.slice(0, 80))}`);
  const method = line.slice(0, sp1);
  if (!isToken(method)) throw new HttpParseError(400, `bad method ${JSON.stringify(method)}`);
  const received = line.slice(sp1 + 1, sp2);
  if (received.length === 0) throw new HttpParseError(400, 'empty request target');
  if (BAD_TARGET_CHAR.test(received)) throw new HttpParseError(400, 'the request target holds a space or a control character');
  if (NOT_IN_TARGET.test(received))
    throw new HttpParseError(400, `the request target ${JSON.stringify(received.slice(0, 80))} holds "#" or a byte above 0x7e: a fragment is never sent, and other bytes are percent-encoded (RFC 3986)`);
  const minor = version(line, sp2 + 1, 400);
  const f = parseFields(text, lineEnd === -1 ? text.length : lineEnd + 2, 400);
  const target = requestTarget(method, received, f.headers, minor);
  let framing: Framing;
  if (f.transferEncoding !== undefined) {
    // RFC 9112 6.1: HTTP/1.0 knows no Transfer-Encoding, so its framing is faulty; refused as nginx does.
    if (minor === 0) throw new HttpParseError(400, 'an HTTP/1.0 request with Transfer-Encoding: HTTP/1.0 has no chunked framing, so where its body ends is unclear (RFC 9112 6.1); send Content-Length, or HTTP/1.1');
    if (f.contentLength !== undefined) throw new HttpParseError(400, 'a request with both Transfer-Encoding and Content-Length is refused (request smuggling)');
    const codings = f.transferEncoding.toLowerCase().split(',');
    if (codings[codings.length - 1]!.trim() !== 'chunked') throw new HttpParseError(400, `Transfer-Encoding ${JSON.stringify(f.transferEncoding)}: a request body's last coding must be chunked`);
    if (codings.length > 1) throw new HttpParseError(501, `Transfer-Encoding ${JSON.stringify(f.transferEncoding)}: only chunked is supported`);
    framing = { kind: 'chunked' };
  } else if (f.contentLength !== undefined) {
    const length = parseLength(f.contentLength, 400);
    framing = length === 0 ? { kind: 'none' } : { kind: 'length', length };
    f.headers['content-length'] = f.contentLength;
  } else {
    framing = { kind: 'none' };
  }
  if (f.expect !== undefined && f.expect.toLowerCase() !== '100-continue') throw new HttpParseError(400, `unsupported Expect ${JSON.stringify(f.expect)}`);
  const expectContinue = f.expect !== undefined && minor === 1 && framing.kind !== 'none';
  if (expectContinue) f.headers.expect = '100-continue';
  const upgrade = f.upgrade !== undefined && hasToken(f.connection, 'upgrade') ? f.upgrade : undefined;
  return { method, target, minor, headers: f.headers, framing, keepAlive: keepAliveOf(minor, f.connection), expectContinue, upgrade };
}

/** `text`: the head as latin1, without the final blank line; `method`: the request's (HEAD has no body). */
export function parseResponseHead(text: string, method: string): ResponseHead {
  const lineEnd = text.indexOf('\r\n');
  const line = lineEnd === -1 ? text : text.slice(0, lineEnd);
  const minor = version(line, 0, 502);
  if (line.charCodeAt(8) !== 0x20 || !DIGITS_3.test(line.slice(9, 12)) || (line.length > 12 && line.charCodeAt(12) !== 0x20))
    throw new HttpParseError(502, `bad status line ${JSON.stringify(line.slice(0, 80))}`);
  const status = Number(line.slice(9, 12));
  if (status < 100) throw new HttpParseError(502, `bad status ${status}`);
  const f = parseFields(text, lineEnd === -1 ? text.length : lineEnd + 2, 502);
  let framing: Framing;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) framing = { kind: 'none' };
  else if (f.transferEncoding !== undefined) {
    const codings = f.transferEncoding.toLowerCase().split(',');
    framing = codings[codings.length - 1]!.trim() === 'chunked' && codings.length === 1 ? { kind: 'chunked' } : { kind: 'close' };
  } else if (f.contentLength !== undefined) framing = { kind: 'length', length: parseLength(f.contentLength, 502) };
  else framing = { kind: 'close' };
  // A HEAD response keeps the Content-Length of the body it describes; elsewhere the proxy frames the body itself.
  if (framing.kind === 'length') f.headers['content-length'] = String(framing.length);
  else if (framing.kind === 'none' && method === 'HEAD' && f.contentLength !== undefined) f.headers['content-length'] = f.contentLength;
  return { status, minor, headers: f.headers, framing, keepAlive: framing.kind !== 'close' && keepAliveOf(minor, f.connection), upgrade: status === 101 ? f.upgrade : undefined };
}

/** What the bytes so far make of a request line (or head): a whole one, not one, or the start of one. */
export type LineVerdict = 'request' | 'not-request' | 'partial';

const enum Line {
  /** Empty lines before the request line (RFC 9112 2.2). */
  Lead,
  Method,
  TargetStart,
  Target,
  Version,
  /** The whole head's states: the request line's end, field lines, the empty line. */
  LineCr,
  LineLf,
  FieldStart,
  FieldName,
  FieldValue,
  EndLf,
}
const HTTP_NAME = 'HTTP/';
const NOT_A_REQUEST_LINE = 'not an HTTP/1.1 request: a request begins "method target HTTP/1.1"';
const BARE_LF = 'a line of the request head ends in a bare LF: lines end in CRLF (RFC 9112 2.2)';
const BARE_CR = 'a bare CR in the request head: lines end in CRLF (RFC 9112 2.2)';
const BAD_FIELD_LINE = 'a header line is not "name: value": a name of token characters then a colon, no whitespace before the colon, no folded lines';
const CONTROL_IN_VALUE = 'a header value holds a control character';

/**
 * Reads a request line byte by byte, across pieces: `method SP
 * request-target SP HTTP/d.d`, after any empty lines, where the method is a
 * token (any case, any length: PROPFIND, get and a 20-letter extension
 * method are all methods) and the target any visible bytes (ASCII or
 * obs-text). Its verdict is 'request' at the version's last digit,
 * 'not-request' at the first byte that cannot belong to such a line, and
 * 'partial' until then: what the sniffer takes for "speaks HTTP/1"
 * (net/sniff.ts). With `wholeHead`, it goes on through the field lines to
 * the empty line, each line ending in CRLF, each field a token, a colon and
 * a value without control characters: the server reads a head that has not
 * come whole with it, and refuses it at the first byte that cannot belong to
 * a request head (a TLS hello, binary bytes, a bare LF, a folded line)
 * instead of waiting for the header timeout. Looser than parseRequestHead,
 * which judges the whole head once it has come (versions, target forms,
 * Host, framing).
 */
export class RequestLineScanner {
  private state = Line.Lead;
  /** Bytes of the version read. */
  private at = 0;
  verdict: LineVerdict = 'partial';
  /** Why the bytes cannot be a request head, once the verdict is 'not-request'. */
  reason = '';

  constructor(private readonly wholeHead = false) {}

  scan(buf: Buffer, from: number, to: number): LineVerdict {
    for (let i = from; i < to && this.verdict === 'partial'; i++) {
      if (this.step(buf[i]!)) continue;
      this.verdict = 'not-request';
      if (this.reason === '') this.reason = NOT_A_REQUEST_LINE;
    }
    return this.verdict;
  }

  private fail(reason: string): false {
    this.reason = reason;
    return false;
  }

  /** Whether byte `c` can come next. */
  private step(c: number): boolean {
    switch (this.state) {
      case Line.Lead:
        if (c === 0x0d || c === 0x0a) return true;
        this.state = Line.Method;
        return CHAR_CLASS[c] !== C_BAD;
      case Line.Method:
        if (c === 0x20) this.state = Line.TargetStart;
        return c === 0x20 || CHAR_CLASS[c] !== C_BAD;
      case Line.TargetStart:
      case Line.Target:
        if (c === 0x20 && this.state === Line.Target) {
          this.state = Line.Version;
          return true;
        }
        this.state = Line.Target;
        return c > 0x20 && c !== 0x7f;
      case Line.Version: {
        const at = this.at++;
        if (at < HTTP_NAME.length) return c === HTTP_NAME.charCodeAt(at);
        if (at === HTTP_NAME.length + 1) return c === 0x2e;
        if (at === HTTP_NAME.length + 2) {
          if (this.wholeHead) this.state = Line.LineCr;
          else this.verdict = 'request';
        }
        return c >= 0x30 && c <= 0x39;
      }
      case Line.LineCr:
        if (c === 0x0d) {
          this.state = Line.LineLf;
          return true;
        }
        return c === 0x0a ? this.fail(BARE_LF) : false;
      case Line.LineLf:
        this.state = Line.FieldStart;
        return c === 0x0a || this.fail(BARE_CR);
      case Line.FieldStart:
        if (c === 0x0d) {
          this.state = Line.EndLf;
          return true;
        }
        if (c === 0x0a) return this.fail(BARE_LF);
        this.state = Line.FieldName;
        return CHAR_CLASS[c] !== C_BAD || this.fail(BAD_FIELD_LINE);
      case Line.FieldName:
        if (c === 0x3a) this.state = Line.FieldValue;
        return c === 0x3a || CHAR_CLASS[c] !== C_BAD || this.fail(BAD_FIELD_LINE);
      case Line.FieldValue:
        if (c === 0x0d) {
          this.state = Line.LineLf;
          return true;
        }
        if (c === 0x0a) return this.fail(BARE_LF);
        return BAD_IN_VALUE[c] !== 1 || this.fail(CONTROL_IN_VALUE);
      case Line.EndLf:
        if (c !== 0x0a) return this.fail(BARE_CR);
        this.verdict = 'request';
        return true;
    }
  }
}

/**
 * Collects a head that may arrive in several pieces. feed() returns the head's
 * text (without the blank line) and where the bytes after it start, or
 * undefined while the blank line has not arrived; a head longer than
 * `maxBytes` is an error with `tooLarge` status (431 for requests).
 */
export class HeadReader {
  private pending: Buffer | undefined;

  constructor(
    private readonly maxBytes: number,
    private readonly tooLarge: 431 | 502,
  ) {}

  get started(): boolean {
    return this.pending !== undefined;
  }

  /** The bytes of an unfinished head read so far. */
  get partial(): Buffer | undefined {
    return this.pending;
  }

  feed(buf: Buffer, start: number): { text: string; next: number; buf: Buffer } | undefined {
    let data = buf;
    let from = start;
    let searchFrom = start;
    if (this.pending) {
      const before = this.pending.length;
      data = Buffer.concat([this.pending, buf.subarray(start)]);
      from = 0;
      searchFrom = Math.max(0, before - 3);
    }
    const end = data.indexOf('\r\n\r\n', searchFrom, 'latin1');
    if (end === -1) {
      if (data.length - from > this.maxBytes) throw new HttpParseError(this.tooLarge, `the message head is longer than ${this.maxBytes} bytes`);
      this.pending = from === 0 ? data : Buffer.from(data.subarray(from));
      return undefined;
    }
    if (end - from > this.maxBytes) throw new HttpParseError(this.tooLarge, `the message head is longer than ${this.maxBytes} bytes`);
    this.pending = undefined;
    return { text: data.toString('latin1', from, end), next: end + 4, buf: data };
  }
}
