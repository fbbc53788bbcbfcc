// HTTP/1.1 read the way a typical backend and a typical client read it, for
// the differential fuzzer: requests as the recording app takes them (what a
// request boundary is at the app), responses as the fuzzer's client takes
// them from a proxy. Deliberately plain and a little lenient (bare LF line
// ends, any Content-Length a number can be read from once): it is the
// reader the proxies must agree with, not a proxy. Pure functions over
// latin1 strings, one message at a time.

export type Field = readonly [name: string, value: string];

export interface Message {
  /** The head as it came, start line and fields, without the blank line. */
  readonly head: string;
  readonly fields: readonly Field[];
  /** The body, de-chunked. */
  readonly body: string;
  /** The trailer fields of a chunked body. */
  readonly trailers: readonly Field[];
  readonly chunked: boolean;
  /** How many characters of the input the message took. */
  readonly length: number;
}

export interface RequestMessage extends Message {
  readonly method: string;
  readonly target: string;
  readonly version: string;
}

export interface ResponseMessage extends Message {
  readonly status: number;
  readonly version: string;
  /** The body ran until the connection closed (no length, not chunked). */
  readonly closeDelimited: boolean;
}

/** A complete message, more input needed, or input no reading makes sense of. */
export type Read<M> = { kind: 'message'; message: M } | { kind: 'more' } | { kind: 'error'; error: string };

const MORE = { kind: 'more' } as const;
const error = (e: string): { kind: 'error'; error: string } => ({ kind: 'error', error: e });

/** The value of every field named `name` (any case), joined with ", "; undefined when there is none. */
export function fieldValue(fields: readonly Field[], name: string): string | undefined {
  const values = fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
  return values.length === 0 ? undefined : values.join(', ');
}

/** Where the head ends (the index of its blank line) and the length of the blank line with the line end before it. */
function headEnd(text: string, from: number): { end: number; sep: number } | undefined {
  const crlf = text.indexOf('\r\n\r\n', from);
  const lf = text.indexOf('\n\n', from);
  if (crlf === -1 && lf === -1) return undefined;
  if (lf !== -1 && (crlf === -1 || lf < crlf)) return { end: lf, sep: 2 };
  return { end: crlf, sep: 4 };
}

function parseFields(lines: readonly string[]): Field[] | string {
  const fields: Field[] = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `a field line without a name and colon: ${JSON.stringify(line.slice(0, 60))}`;
    fields.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return fields;
}

/** Reads a line ended by CRLF or LF at `at`; undefined when its end has not come. */
function line(text: string, at: number): { line: string; next: number } | undefined {
  const lf = text.indexOf('\n', at);
  if (lf === -1) return undefined;
  return { line: text.slice(at, lf > at && text[lf - 1] === '\r' ? lf - 1 : lf), next: lf + 1 };
}

/** A chunked body from `at`: its data, trailers and end, or more/error. */
function dechunk(text: string, at: number): { body: string; trailers: Field[]; next: number } | 'more' | string {
  let body = '';
  let pos = at;
  for (;;) {
    const size = line(text, pos);
    if (!size) return text.length - pos > 4096 ? 'a chunk-size line longer than 4 KiB' : 'more';
    const digits = size.line.split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,15}$/.test(digits)) return `a bad chunk size ${JSON.stringify(size.line.slice(0, 40))}`;
    const n = Number.parseInt(digits, 16);
    pos = size.next;
    if (n === 0) break;
    if (text.length < pos + n) return 'more';
    body += text.slice(pos, pos + n);
    pos += n;
    const end = line(text, pos);
    if (!end) return text.length - pos >= 2 ? 'chunk data longer than its size' : 'more';
    if (end.line !== '') return 'chunk data longer than its size';
    pos = end.next;
  }
  const trailerLines: string[] = [];
  for (;;) {
    const t = line(text, pos);
    if (!t) return 'more';
    pos = t.next;
    if (t.line === '') break;
    trailerLines.push(t.line);
  }
  const trailers = parseFields(trailerLines);
  if (typeof trailers === 'string') return `trailers: ${trailers}`;
  return { body, trailers, next: pos };
}

/** Reads the request at the start of `text` (empty lines before it skipped), as the recording app does. */
export function readRequest(text: string): Read<RequestMessage> {
  let from = 0;
  while (text[from] === '\r' || text[from] === '\n') from++;
  const he = headEnd(text, from);
  if (!he) return text.length - from > 64 * 1024 ? error('a request head longer than 64 KiB') : MORE;
  const head = text.slice(from, he.end);
  const [start = '', ...lines] = head.split(/\r?\n/);
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP\/\d\.\d)$/.exec(start);
  if (!m) return error(`a bad request line ${JSON.stringify(start.slice(0, 60))}`);
  const fields = parseFields(lines);
  if (typeof fields === 'string') return error(fields);
  const at = he.end + he.sep;
  const base = { head, fields, method: m[1]!, target: m[2]!, version: m[3]! };
  const te = fieldValue(fields, 'transfer-encoding');
  if (te !== undefined) {
    if (te.split(',').at(-1)!.trim().toLowerCase() !== 'chunked') return error(`Transfer-Encoding ${JSON.stringify(te)} does not end with chunked`);
    const d = dechunk(text, at);
    if (d === 'more') return MORE;
    if (typeof d === 'string') return error(d);
    return { kind: 'message', message: { ...base, body: d.body, trailers: d.trailers, chunked: true, length: d.next } };
  }
  const lengths = [...new Set(fields.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v))];
  if (lengths.length > 1) return error(`conflicting Content-Length ${lengths.join(' and ')}`);
  let n = 0;
  if (lengths.length === 1) {
    if (!/^\d{1,15}$/.test(lengths[0]!)) return error(`a bad Content-Length ${JSON.stringify(lengths[0])}`);
    n = Number(lengths[0]);
  }
  if (text.length < at + n) return MORE;
  return { kind: 'message', message: { ...base, body: text.slice(at, at + n), trailers: [], chunked: false, length: at + n } };
}

/**
 * Reads the response at the start of `text` to a request of `method`;
 * `closed`: the connection has ended, so a body without a length is complete.
 */
export function readResponse(text: string, method: string, closed: boolean): Read<ResponseMessage> {
  const he = headEnd(text, 0);
  if (!he) return text.length > 64 * 1024 ? error('a response head longer than 64 KiB') : MORE;
  const head = text.slice(0, he.end);
  const [start = '', ...lines] = head.split(/\r?\n/);
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: .*)?$/.exec(start);
  if (!m) return error(`a bad status line ${JSON.stringify(start.slice(0, 60))}`);
  const fields = parseFields(lines);
  if (typeof fields === 'string') return error(fields);
  const status = Number(m[2]);
  const at = he.end + he.sep;
  const base = { head, fields, status, version: m[1]!, trailers: [] as Field[], chunked: false, closeDelimited: false };
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) return { kind: 'message', message: { ...base, body: '', length: at } };
  const te = fieldValue(fields, 'transfer-encoding');
  if (te !== undefined && te.trim().toLowerCase() === 'chunked') {
    const d = dechunk(text, at);
    if (d === 'more') return MORE;
    if (typeof d === 'string') return error(d);
    return { kind: 'message', message: { ...base, body: d.body, trailers: d.trailers, chunked: true, length: d.next } };
  }
  const cl = te === undefined ? fieldValue(fields, 'content-length') : undefined;
  if (cl !== undefined) {
    const values = [...new Set(cl.split(',').map((v) => v.trim()))];
    if (values.length !== 1 || !/^\d{1,15}$/.test(values[0]!)) return error(`a bad Content-Length ${JSON.stringify(cl)}`);
    const n = Number(values[0]);
    if (text.length < at + n) return MORE;
    return { kind: 'message', message: { ...base, body: text.slice(at, at + n), length: at + n } };
  }
  if (!closed) return MORE;
  return { kind: 'message', message: { ...base, body: text.slice(at), closeDelimited: true, length: text.length } };
}

/** Every request in `text`, one after another, and what is left (an unfinished request, or input that does not parse). */
export function readRequests(text: string): { requests: RequestMessage[]; rest: string; error: string | undefined } {
  const requests: RequestMessage[] = [];
  let rest = text;
  for (;;) {
    if (rest.replace(/^[\r\n]+/, '') === '') return { requests, rest: '', error: undefined };
    const r = readRequest(rest);
    if (r.kind === 'more') return { requests, rest, error: undefined };
    if (r.kind === 'error') return { requests, rest, error: r.error };
    requests.push(r.message);
    rest = rest.slice(r.message.length);
  }
}
