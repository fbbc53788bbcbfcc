// The differential fuzzer's corpus: request byte sequences a client sends to
// a proxy, and response byte sequences the app answers a proxy with, each in
// a class. A case is a function of its marker, a token unique to the case in
// a run that its request targets carry (`/${m}/...`), so that the recording
// app can tell which case each request it receives belongs to, a smuggled
// one included; lengths are computed after the marker is in place.
//
// Adding a case: one line in the class it belongs to (or a new class), its
// bytes exactly as they go on the wire. The harness needs no expectation:
// the references (HAProxy, nginx) are the oracle, and the assertions are the
// same for every case (README.md).

/** The gap between the pieces of a case written in pieces, by the client or (a response case's answer) by the app. */
export const PIECE_GAP_MS = 20;

export interface RequestCase {
  readonly side: 'request';
  readonly id: string;
  readonly cls: string;
  /** The bytes the client writes, as latin1. */
  readonly bytes: string;
  /** Written in this many pieces, 20 ms apart (default one write). */
  readonly pieces?: number;
}

export interface ResponseCase {
  readonly side: 'response';
  readonly id: string;
  readonly cls: string;
  /** What the client asks (a plain GET naming the case). */
  readonly bytes: string;
  /** The app's answer, as latin1, in the pieces the app writes it in when `split`. */
  readonly reply: readonly string[];
  /** The app writes the pieces 20 ms apart (else all in one write). */
  readonly split: boolean;
  /** The app closes the connection after its answer. */
  readonly close: boolean;
}

export type FuzzCase = RequestCase | ResponseCase;

/** A case before its marker is known. */
export type CaseTemplate = { readonly id: string; readonly cls: string; readonly make: (m: string) => Omit<RequestCase, 'id' | 'cls' | 'side'> } | ResponseTemplate;

interface ResponseTemplate {
  readonly id: string;
  readonly cls: string;
  readonly reply: readonly string[];
  readonly close: boolean;
}

/** The marker of the case at `index` in a run: what the recording app looks for in a request target. */
export const marker = (index: number): string => `fz${String(index).padStart(5, '0')}z`;
export const MARKER_IN_TARGET = /fz(\d{5,})z/;

const HOST = 'host: app.fuzz\r\n';
/** A request the client never meant as one: if the app ever sees it, a proxy let a boundary move. */
const smuggled = (m: string): string => `GET /${m}/smuggled HTTP/1.1\r\n${HOST}\r\n`;
const get = (m: string, name: string, extra = ''): string => `GET /${m}/${name} HTTP/1.1\r\n${HOST}${extra}\r\n`;
const len = (body: string): string => `content-length: ${body.length}\r\n`;
/** A POST with these header lines (each ending CRLF) and body. */
const post = (m: string, name: string, fields: string, body: string): string => `POST /${m}/${name} HTTP/1.1\r\n${HOST}${fields}\r\n${body}`;
/** The CL.TE / TE.TE shape: chunked's reading ends at `0`, Content-Length's takes the smuggled request as body. */
const teAndLength = (m: string, name: string, te: string): string => {
  const body = `0\r\n\r\n${smuggled(m)}`;
  return post(m, name, `${te}${len(body)}`, body);
};

type Make = (m: string) => string;
type Cases = Record<string, Make | { bytes: Make; pieces: number }>;
/** The cases of a class, by name (a list of pairs where a name is one of Object's own, like constructor). */
const requests = (cls: string, cases: Cases | readonly (readonly [string, Make])[]): CaseTemplate[] =>
  (Array.isArray(cases) ? (cases as readonly (readonly [string, Make])[]) : Object.entries(cases as Cases)).map(([name, c]) => ({
    id: `${cls}/${name}`,
    cls,
    make: (m: string) => (typeof c === 'function' ? { bytes: c(m) } : { bytes: c.bytes(m), pieces: c.pieces }),
  }));

const REQUESTS: CaseTemplate[] = [
  ...requests('baseline', {
    get: (m) => get(m, 'get'),
    'get-close': (m) => get(m, 'close', 'connection: close\r\n'),
    'get-in-pieces': { bytes: (m) => get(m, 'pieces'), pieces: 5 },
    'post-length': (m) => post(m, 'post', len('hello'), 'hello'),
    'post-chunked': (m) => post(m, 'chunked', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'),
    'post-chunked-in-pieces': { bytes: (m) => post(m, 'chunked', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'), pieces: 6 },
    'chunked-extension-and-trailer': (m) => post(m, 'ext', 'transfer-encoding: chunked\r\n', '5;name=value\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n'),
    'chunk-size-upper-hex': (m) => post(m, 'hex', 'transfer-encoding: chunked\r\n', 'A\r\n0123456789\r\n0\r\n\r\n'),
    'transfer-encoding-upper-case': (m) => post(m, 'upper', 'Transfer-Encoding: CHUNKED\r\n', '5\r\nhello\r\n0\r\n\r\n'),
    pipelined: (m) => get(m, 'first') + get(m, 'second'),
    'keep-alive-post-then-get': { bytes: (m) => post(m, 'first', len('hello'), 'hello') + get(m, 'second'), pieces: 2 },
    'http10-get': (m) => `GET /${m}/http10 HTTP/1.0\r\n\r\n`,
    'http10-keep-alive': (m) => `GET /${m}/http10 HTTP/1.0\r\nconnection: keep-alive\r\n${HOST}\r\n`,
    'empty-line-before': (m) => `\r\n${get(m, 'empty-line')}`,
    'obs-text-value': (m) => get(m, 'obs-text', 'x-name: caf\xe9\r\n'),
    'absolute-form-same-host': (m) => `GET http://app.fuzz/${m}/absolute HTTP/1.1\r\n${HOST}\r\n`,
    'content-length-zero': (m) => post(m, 'zero', 'content-length: 0\r\n', ''),
    'value-whitespace': (m) => post(m, 'ows', 'content-length:\t 5 \t\r\n', 'hello'),
    'expect-100-continue': (m) => post(m, 'expect', `expect: 100-continue\r\n${len('hello')}`, 'hello'),
  }),
  ...requests('cl-te', {
    'length-then-chunked': (m) => teAndLength(m, 'cl-te', 'transfer-encoding: chunked\r\n'),
    'chunked-then-length': (m) => {
      const body = `0\r\n\r\n${smuggled(m)}`;
      return post(m, 'te-cl', `${len(body)}transfer-encoding: chunked\r\n`, body);
    },
    'classic-g-prefix': (m) => post(m, 'cl-te-g', 'content-length: 6\r\ntransfer-encoding: chunked\r\n', '0\r\n\r\nG'),
  }),
  ...requests('te-cl', {
    'length-covers-size-line': (m) => {
      const inner = `${smuggled(m)}`;
      const chunk = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
      return post(m, 'te-cl', `transfer-encoding: chunked\r\ncontent-length: ${inner.length.toString(16).length + 2}\r\n`, chunk);
    },
    'length-zero-and-chunked': (m) => post(m, 'te-cl0', 'content-length: 0\r\ntransfer-encoding: chunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
  }),
  ...requests('te-te', {
    xchunked: (m) => teAndLength(m, 'x', 'transfer-encoding: xchunked\r\n'),
    'xchunked-alone': (m) => post(m, 'x-alone', 'transfer-encoding: xchunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'space-before-value': (m) => teAndLength(m, 'sp', 'transfer-encoding:  chunked\r\n'),
    'tab-before-value': (m) => teAndLength(m, 'tab', 'transfer-encoding:\tchunked\r\n'),
    'tab-before-value-alone': (m) => post(m, 'tab-alone', 'transfer-encoding:\tchunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'chunked-identity': (m) => teAndLength(m, 'ci', 'transfer-encoding: chunked, identity\r\n'),
    'chunked-identity-alone': (m) => post(m, 'ci-alone', 'transfer-encoding: chunked, identity\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'identity-chunked-alone': (m) => post(m, 'ic-alone', 'transfer-encoding: identity, chunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'gzip-chunked-alone': (m) => post(m, 'gc-alone', 'transfer-encoding: gzip, chunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'twice-in-one-line': (m) => post(m, 'cc', 'transfer-encoding: chunked, chunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    duplicated: (m) => post(m, 'dup', 'transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n', `5\r\nhello\r\n0\r\n\r\n`),
    'duplicated-with-length': (m) => teAndLength(m, 'dup-cl', 'transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n'),
    'unknown-then-chunked-lines': (m) => teAndLength(m, 'x-c', 'transfer-encoding: x\r\ntransfer-encoding: chunked\r\n'),
    'chunked-then-unknown-lines': (m) => teAndLength(m, 'c-x', 'transfer-encoding: chunked\r\ntransfer-encoding: x\r\n'),
    identity: (m) => teAndLength(m, 'identity', 'transfer-encoding: identity\r\n'),
    quoted: (m) => teAndLength(m, 'quoted', 'transfer-encoding: "chunked"\r\n'),
    'with-parameter': (m) => teAndLength(m, 'param', 'transfer-encoding: chunked;q=1\r\n'),
    'vertical-tab': (m) => teAndLength(m, 'vt', 'transfer-encoding: chunked\x0b\r\n'),
    'form-feed-before': (m) => teAndLength(m, 'ff', 'transfer-encoding:\x0cchunked\r\n'),
    'name-underscore': (m) => teAndLength(m, 'underscore', 'transfer_encoding: chunked\r\n'),
    'name-space-inside': (m) => teAndLength(m, 'name-space', 'transfer encoding: chunked\r\n'),
    'capitalised-value': (m) => teAndLength(m, 'cap', 'transfer-encoding: Chunked\r\n'),
    'no-space-after-colon': (m) => teAndLength(m, 'nospace', 'transfer-encoding:chunked\r\n'),
    'empty-value': (m) => teAndLength(m, 'empty', 'transfer-encoding: \r\n'),
  }),
  ...requests('content-length', {
    'list-same': (m) => post(m, 'list', 'content-length: 1,1\r\n', 'a'),
    'list-same-spaced': (m) => post(m, 'list-sp', 'content-length: 1, 1\r\n', 'a'),
    'list-different': (m) => post(m, 'list-diff', 'content-length: 1,2\r\n', 'ab'),
    plus: (m) => post(m, 'plus', 'content-length: +1\r\n', 'a'),
    'leading-zero': (m) => post(m, 'zero', 'content-length: 01\r\n', 'a'),
    'leading-space': (m) => post(m, 'space', 'content-length:  1\r\n', 'a'),
    'space-inside': (m) => post(m, 'inside', 'content-length: 1 1\r\n', `a${'b'.repeat(10)}`),
    negative: (m) => post(m, 'negative', 'content-length: -1\r\n', 'a'),
    hex: (m) => post(m, 'hex', 'content-length: 0x1\r\n', 'a'),
    decimal: (m) => post(m, 'decimal', 'content-length: 1.0\r\n', 'a'),
    empty: (m) => post(m, 'empty', 'content-length: \r\n', 'a'),
    huge: (m) => post(m, 'huge', 'content-length: 99999999999999999999\r\n', 'a'),
    'wraps-at-2^64': (m) => post(m, 'wrap64', 'content-length: 18446744073709551617\r\n', 'a'),
    'duplicate-same': (m) => post(m, 'dup-same', 'content-length: 1\r\ncontent-length: 1\r\n', 'a'),
    'duplicate-different': (m) => post(m, 'dup-diff', 'content-length: 1\r\ncontent-length: 2\r\n', 'ab'),
    'duplicate-different-smuggles': (m) => {
      const next = smuggled(m);
      return post(m, 'dup-smuggle', `content-length: 0\r\ncontent-length: ${next.length}\r\n`, next);
    },
    'on-get': (m) => `GET /${m}/get-body HTTP/1.1\r\n${HOST}${len('hello')}\r\nhello`,
  }),
  ...requests('chunk-size', {
    overflow: (m) => post(m, 'overflow', 'transfer-encoding: chunked\r\n', 'ffffffffffffffffff\r\nhello\r\n0\r\n\r\n'),
    'wraps-to-one': (m) => post(m, 'wrap', 'transfer-encoding: chunked\r\n', '10000000000000001\r\na\r\n0\r\n\r\n'),
    'hex-prefix': (m) => post(m, '0x', 'transfer-encoding: chunked\r\n', '0x5\r\nhello\r\n0\r\n\r\n'),
    negative: (m) => post(m, 'neg', 'transfer-encoding: chunked\r\n', '-5\r\nhello\r\n0\r\n\r\n'),
    plus: (m) => post(m, 'plus', 'transfer-encoding: chunked\r\n', '+5\r\nhello\r\n0\r\n\r\n'),
    'leading-space': (m) => post(m, 'lsp', 'transfer-encoding: chunked\r\n', ' 5\r\nhello\r\n0\r\n\r\n'),
    'trailing-space': (m) => post(m, 'tsp', 'transfer-encoding: chunked\r\n', '5 \r\nhello\r\n0\r\n\r\n'),
    'many-leading-zeros': (m) => post(m, 'zeros', 'transfer-encoding: chunked\r\n', '000000000000000000005\r\nhello\r\n0\r\n\r\n'),
    'not-hex': (m) => post(m, 'nothex', 'transfer-encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n'),
    'data-longer-than-size': (m) => post(m, 'longer', 'transfer-encoding: chunked\r\n', `3\r\nhello\r\n0\r\n\r\n`),
    'data-shorter-than-size': (m) => post(m, 'shorter', 'transfer-encoding: chunked\r\n', `8\r\nhello\r\n0\r\n\r\n${smuggled(m)}`),
    'no-line-end-after-data': (m) => post(m, 'nocrlf', 'transfer-encoding: chunked\r\n', '5\r\nhello0\r\n\r\n'),
    'missing-last-chunk': (m) => post(m, 'nolast', 'transfer-encoding: chunked\r\n', `5\r\nhello\r\n\r\n${smuggled(m)}`),
  }),
  ...requests('chunk-extension', {
    quoted: (m) => post(m, 'quoted', 'transfer-encoding: chunked\r\n', '5;a="b c"\r\nhello\r\n0\r\n\r\n'),
    'whitespace-around': (m) => post(m, 'bws', 'transfer-encoding: chunked\r\n', '5 ; a = b\r\nhello\r\n0\r\n\r\n'),
    'no-name': (m) => post(m, 'noname', 'transfer-encoding: chunked\r\n', '5;\r\nhello\r\n0\r\n\r\n'),
    'bare-cr': (m) => post(m, 'cr', 'transfer-encoding: chunked\r\n', '5;a\rb\r\nhello\r\n0\r\n\r\n'),
    'bare-lf': (m) => post(m, 'lf', 'transfer-encoding: chunked\r\n', '5;a\nhello\r\n0\r\n\r\n'),
    nul: (m) => post(m, 'nul', 'transfer-encoding: chunked\r\n', '5;a\0b\r\nhello\r\n0\r\n\r\n'),
    'bare-cr-smuggles': (m) => post(m, 'cr-smuggle', 'transfer-encoding: chunked\r\n', `2;\r${'x'.repeat(10)}\r\nhi\r\n0\r\n\r\n${smuggled(m)}`),
    'on-last-chunk-bare-lf': (m) => post(m, 'last-lf', 'transfer-encoding: chunked\r\n', `5\r\nhello\r\n0;a\nb\r\n\r\n`),
  }),
  ...requests('trailer', {
    valid: (m) => post(m, 'valid', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n'),
    'no-colon': (m) => post(m, 'nocolon', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nnocolon\r\n\r\n'),
    'no-colon-smuggles': (m) => post(m, 'nocolon-smuggle', 'transfer-encoding: chunked\r\n', `5\r\nhello\r\n0\r\nx\r\n\r\n${smuggled(m)}`),
    'content-length': (m) => post(m, 'cl', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\ncontent-length: 5\r\n\r\n'),
    'obs-fold': (m) => post(m, 'fold', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-a: b\r\n c\r\n\r\n'),
    nul: (m) => post(m, 'nul', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-a: b\0c\r\n\r\n'),
    'space-before-colon': (m) => post(m, 'sp', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-a : b\r\n\r\n'),
  }),
  ...requests('obs-fold', {
    value: (m) => get(m, 'fold', 'x-a: a\r\n b\r\n'),
    'transfer-encoding': (m) => teAndLength(m, 'fold-te', 'transfer-encoding: \r\n chunked\r\n'),
    host: (m) => `GET /${m}/fold-host HTTP/1.1\r\nhost:\r\n app.fuzz\r\n\r\n`,
    'space-before-first-field': (m) => `GET /${m}/first-sp HTTP/1.1\r\n ${HOST}\r\n`,
    'space-line-before-transfer-encoding': (m) => teAndLength(m, 'sp-te', ' transfer-encoding: chunked\r\n'),
  }),
  ...requests('control-chars', {
    'nul-in-value': (m) => get(m, 'nul-v', 'x-a: a\0b\r\n'),
    'cr-in-value': (m) => get(m, 'cr-v', 'x-a: a\rb\r\n'),
    'lf-in-value-makes-te': (m) => teAndLength(m, 'lf-te', 'x-a: a\ntransfer-encoding: chunked\r\n'),
    'del-in-value': (m) => get(m, 'del-v', 'x-a: a\x7fb\r\n'),
    'vt-in-value': (m) => get(m, 'vt-v', 'x-a: a\x0bb\r\n'),
    'nul-in-name': (m) => get(m, 'nul-n', 'x\0a: b\r\n'),
    'cr-in-name': (m) => get(m, 'cr-n', 'x\ra: b\r\n'),
    'space-in-name': (m) => get(m, 'sp-n', 'x a: b\r\n'),
    'at-in-name': (m) => get(m, 'at-n', 'x@a: b\r\n'),
    'empty-name': (m) => get(m, 'empty-n', ': b\r\n'),
    'high-byte-in-name': (m) => get(m, 'high-n', 'x\xe9a: b\r\n'),
    'no-colon': (m) => get(m, 'nocolon', 'x-a b\r\n'),
  }),
  ...requests('space-before-colon', {
    host: (m) => `GET /${m}/sp-host HTTP/1.1\r\nhost : app.fuzz\r\n\r\n`,
    'content-length': (m) => post(m, 'sp-cl', 'content-length : 5\r\n', 'hello'),
    'transfer-encoding': (m) => teAndLength(m, 'sp-te', 'transfer-encoding : chunked\r\n'),
    'tab-transfer-encoding': (m) => teAndLength(m, 'tab-te', 'transfer-encoding\t: chunked\r\n'),
    other: (m) => get(m, 'sp-other', 'x-a : b\r\n'),
  }),
  ...requests('host', {
    missing: (m) => `GET /${m}/no-host HTTP/1.1\r\n\r\n`,
    'duplicate-same': (m) => get(m, 'dup-same', HOST),
    'duplicate-different': (m) => get(m, 'dup-diff', 'host: other.fuzz\r\n'),
    list: (m) => `GET /${m}/list HTTP/1.1\r\nhost: app.fuzz, other.fuzz\r\n\r\n`,
    empty: (m) => `GET /${m}/empty HTTP/1.1\r\nhost: \r\n\r\n`,
    'with-space': (m) => `GET /${m}/space HTTP/1.1\r\nhost: app fuzz\r\n\r\n`,
    'with-userinfo': (m) => `GET /${m}/userinfo HTTP/1.1\r\nhost: user@app.fuzz\r\n\r\n`,
    'with-path': (m) => `GET /${m}/path HTTP/1.1\r\nhost: app.fuzz/x\r\n\r\n`,
    'bad-port': (m) => `GET /${m}/port HTTP/1.1\r\nhost: app.fuzz:8o\r\n\r\n`,
    'absolute-form-conflicting': (m) => `GET http://other.fuzz/${m}/abs-conflict HTTP/1.1\r\n${HOST}\r\n`,
    'absolute-form-no-host': (m) => `GET http://app.fuzz/${m}/abs-nohost HTTP/1.1\r\n\r\n`,
    'absolute-form-bad-scheme': (m) => `GET ftp://app.fuzz/${m}/abs-ftp HTTP/1.1\r\n${HOST}\r\n`,
    'http10-missing': (m) => `GET /${m}/http10 HTTP/1.0\r\n\r\n`,
  }),
  ...requests('http10-te', {
    chunked: (m) => `POST /${m}/h10-te HTTP/1.0\r\n${HOST}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    'chunked-keep-alive-smuggles': (m) => `POST /${m}/h10-te-ka HTTP/1.0\r\n${HOST}connection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${smuggled(m)}`,
    'chunked-with-length': (m) => {
      const body = `0\r\n\r\n${smuggled(m)}`;
      return `POST /${m}/h10-te-cl HTTP/1.0\r\n${HOST}connection: keep-alive\r\ntransfer-encoding: chunked\r\n${len(body)}\r\n${body}`;
    },
  }),
  ...requests('method', {
    'at-sign': (m) => `G@T /${m}/at HTTP/1.1\r\n${HOST}\r\n`,
    'lower-case': (m) => `get /${m}/lower HTTP/1.1\r\n${HOST}\r\n`,
    unknown: (m) => `FOO /${m}/foo HTTP/1.1\r\n${HOST}\r\n`,
    empty: (m) => ` /${m}/empty HTTP/1.1\r\n${HOST}\r\n`,
    nul: (m) => `GE\0T /${m}/nul HTTP/1.1\r\n${HOST}\r\n`,
    long: (m) => `${'A'.repeat(1000)} /${m}/long HTTP/1.1\r\n${HOST}\r\n`,
    connect: (m) => `CONNECT app.fuzz:443 HTTP/1.1\r\n${HOST}x-case: ${m}\r\n\r\n`,
    'unknown-with-body': (m) => `FOO /${m}/foo-body HTTP/1.1\r\n${HOST}${len('hello')}\r\nhello`,
  }),
  ...requests('version', {
    '1.2': (m) => `GET /${m}/v12 HTTP/1.2\r\n${HOST}\r\n`,
    '2.0': (m) => `GET /${m}/v20 HTTP/2.0\r\n${HOST}\r\n`,
    '3.0': (m) => `GET /${m}/v30 HTTP/3.0\r\n${HOST}\r\n`,
    '1.10': (m) => `GET /${m}/v110 HTTP/1.10\r\n${HOST}\r\n`,
    '11.1': (m) => `GET /${m}/v111 HTTP/11.1\r\n${HOST}\r\n`,
    'lower-case': (m) => `GET /${m}/vlower http/1.1\r\n${HOST}\r\n`,
    'no-minor': (m) => `GET /${m}/vnominor HTTP/1\r\n${HOST}\r\n`,
    'trailing-space': (m) => `GET /${m}/vtrail HTTP/1.1 \r\n${HOST}\r\n`,
    missing: (m) => `GET /${m}/vmissing\r\n${HOST}\r\n`,
  }),
  ...requests('request-line', {
    'two-spaces': (m) => `GET  /${m}/two HTTP/1.1\r\n${HOST}\r\n`,
    tab: (m) => `GET\t/${m}/tab\tHTTP/1.1\r\n${HOST}\r\n`,
    'space-in-target': (m) => `GET /${m}/a b HTTP/1.1\r\n${HOST}\r\n`,
    'nul-in-target': (m) => `GET /${m}/a\0b HTTP/1.1\r\n${HOST}\r\n`,
    'hash-in-target': (m) => `GET /${m}/a#b HTTP/1.1\r\n${HOST}\r\n`,
    'high-byte-in-target': (m) => `GET /${m}/caf\xe9 HTTP/1.1\r\n${HOST}\r\n`,
    'no-slash': (m) => `GET ${m}/noslash HTTP/1.1\r\n${HOST}\r\n`,
    'long-target': (m) => `GET /${m}/${'a'.repeat(9000)} HTTP/1.1\r\n${HOST}\r\n`,
  }),
  ...requests('bare-lf', {
    head: (m) => `GET /${m}/lf HTTP/1.1\n${HOST.replace('\r\n', '\n')}\n`,
    'field-line': (m) => `GET /${m}/lf-field HTTP/1.1\r\n${HOST.replace('\r\n', '\n')}\r\n`,
    'end-of-head': (m) => `GET /${m}/lf-end HTTP/1.1\r\n${HOST}\n`,
    'chunked-body': (m) => post(m, 'lf-body', 'transfer-encoding: chunked\r\n', '5\nhello\n0\n\n'),
    'bare-cr-line-end': (m) => `GET /${m}/cr HTTP/1.1\r${HOST}\r\n`,
  }),
  ...requests('pipeline', {
    'length-zero-then-request': (m) => post(m, 'zero', 'content-length: 0\r\n', '') + smuggled(m),
    'body-looks-like-request': (m) => post(m, 'body-req', len(smuggled(m)), smuggled(m)),
    'body-longer-than-length': (m) => post(m, 'longer', len('hello'), 'hello') + smuggled(m),
    'chunked-then-request': (m) => post(m, 'chunked', 'transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') + smuggled(m),
    'good-then-bad': (m) => get(m, 'good') + `GET /${m}/bad HTTP/1.1\r\nhost : app.fuzz\r\n\r\n`,
    'good-bad-good': (m) => get(m, 'first') + `G@T /${m}/bad HTTP/1.1\r\n${HOST}\r\n` + get(m, 'third'),
    'unframed-body-never-ends': (m) => `${post(m, 'unframed', '', '')}hello`,
    'unfinished-head-with-blank-line': (m) => `GET /${m}/unfinished HTTP/1.1\r\n${HOST} \r\n`,
    'three-in-pieces': { bytes: (m) => get(m, 'one') + post(m, 'two', 'transfer-encoding: chunked\r\n', '3\r\nabc\r\n0\r\n\r\n') + get(m, 'three'), pieces: 7 },
  }),
  ...requests('prototype-names', [
    ['constructor', (m) => get(m, 'constructor', 'constructor: x\r\n')],
    ['__proto__', (m) => get(m, 'proto', '__proto__: x\r\n')],
    ['toString', (m) => get(m, 'tostring', 'toString: x\r\n')],
    ['hasOwnProperty', (m) => get(m, 'hop', 'hasOwnProperty: x\r\n')],
    ['Constructor-twice', (m) => get(m, 'constructor-twice', 'Constructor: x\r\nconstructor: y\r\n')],
  ]),
  ...requests('limits', {
    'head-of-70-kb': (m) => get(m, 'big', `x-big: ${'a'.repeat(70 * 1024)}\r\n`),
    '120-fields': (m) => get(m, 'many', Array.from({ length: 120 }, (_, i) => `x-f${i}: ${i}\r\n`).join('')),
    'expect-unknown': (m) => post(m, 'expect', `expect: something\r\n${len('hello')}`, 'hello'),
  }),
];

const RESPONSE_CASES: ResponseTemplate[] = [
  { id: 'response/valid-length', cls: 'response-baseline', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\n', '\r\nhe', 'llo'], close: false },
  { id: 'response/valid-chunked', cls: 'response-baseline', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', '5\r\nhello\r\n', '0\r\n\r\n'], close: false },
  { id: 'response/valid-until-close', cls: 'response-baseline', reply: ['HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n', 'hello'], close: true },
  { id: 'response/bad-chunk-size', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', 'zz\r\nhello\r\n0\r\n\r\n'], close: false },
  { id: 'response/chunk-size-overflow', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', 'ffffffffffffffffff\r\nhello\r\n0\r\n\r\n'], close: false },
  { id: 'response/close-mid-chunk', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', 'a\r\nhel'], close: true },
  { id: 'response/close-before-last-chunk', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', '5\r\nhello\r\n'], close: true },
  { id: 'response/chunk-extension-bare-cr', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', '5;a\rb\r\nhello\r\n0\r\n\r\n'], close: false },
  { id: 'response/trailer-without-colon', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', '5\r\nhello\r\n0\r\nnocolon\r\n\r\n'], close: false },
  { id: 'response/chunk-data-longer', cls: 'response-chunked', reply: ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', '3\r\nhello\r\n0\r\n\r\n'], close: false },
  { id: 'response/short-length-then-close', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n', 'hello'], close: true },
  { id: 'response/duplicate-length-different', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n', 'hello!'], close: false },
  { id: 'response/duplicate-length-same', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n', 'hello'], close: false },
  { id: 'response/length-negative', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n', 'hello'], close: true },
  { id: 'response/length-plus', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n', 'hello'], close: false },
  { id: 'response/length-and-chunked', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n', '5\r\nhello\r\n0\r\n\r\n'], close: false },
  { id: 'response/body-beyond-length', cls: 'response-length', reply: ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged'], close: false },
  { id: 'response/204-with-body', cls: 'response-length', reply: ['HTTP/1.1 204 No Content\r\ncontent-length: 6\r\n\r\n', 'forged'], close: false },
  { id: 'response/bare-lf-head', cls: 'response-head', reply: ['HTTP/1.1 200 OK\ncontent-length: 5\n\n', 'hello'], close: false },
  { id: 'response/bad-status-line', cls: 'response-head', reply: ['HTTP/1.1 2000 OK\r\ncontent-length: 5\r\n\r\n', 'hello'], close: false },
  { id: 'response/obs-fold', cls: 'response-head', reply: ['HTTP/1.1 200 OK\r\nx-a: a\r\n b\r\ncontent-length: 5\r\n\r\n', 'hello'], close: false },
  { id: 'response/nul-in-value', cls: 'response-head', reply: ['HTTP/1.1 200 OK\r\nx-a: a\0b\r\ncontent-length: 5\r\n\r\n', 'hello'], close: false },
  { id: 'response/space-before-colon', cls: 'response-head', reply: ['HTTP/1.1 200 OK\r\ncontent-length : 5\r\n\r\n', 'hello'], close: false },
  { id: 'response/head-cut-by-close', cls: 'response-head', reply: ['HTTP/1.1 200 OK\r\ncontent-', 'length: 5\r\n'], close: true },
  { id: 'response/nothing-then-close', cls: 'response-head', reply: [], close: true },
  { id: 'response/unrequested-101', cls: 'response-head', reply: ['HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n', 'forged'], close: false },
  { id: 'response/http2-status-line', cls: 'response-head', reply: ['HTTP/2.0 200 OK\r\ncontent-length: 5\r\n\r\n', 'hello'], close: false },
];

/** The request each response case is asked with. */
const responseRequest = (m: string, name: string): string => get(m, `response-${name}`);

/** Every case of the corpus, each response case twice (its answer in one write, and in pieces). */
export const CORPUS: readonly CaseTemplate[] = [...REQUESTS, ...RESPONSE_CASES];

/** The cases of `templates` with their markers, numbered from `first`. */
export function materialize(templates: readonly CaseTemplate[], first = 0): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (const t of templates) {
    if ('make' in t) {
      out.push({ side: 'request', id: t.id, cls: t.cls, ...t.make(marker(first + out.length)) });
      continue;
    }
    for (const split of [false, true]) {
      const m = marker(first + out.length);
      out.push({ side: 'response', id: `${t.id}/${split ? 'split' : 'one-write'}`, cls: t.cls, bytes: responseRequest(m, t.id.split('/').pop()!), reply: t.reply, split, close: t.close });
    }
  }
  return out;
}
