// Generated request cases for the differential fuzzer (fast-check): a
// request built from parts, each drawn from the spellings that make parsers
// disagree (Transfer-Encoding and Content-Length names and values, chunk
// sizes and extensions, trailers, line ends, methods, versions, a stray byte
// in the head), sometimes with a request after it that must never reach the
// app on its own. Seeded: the same seed gives the same cases, so a failure
// names its seed and case and the run can be replayed
// (`npm run fuzz:h1 -- --seed S --only generated/S/I`).
import fc from 'fast-check';
import type { RequestCase } from './corpus.js';

/**
 * Mostly the plain spelling (11 in 12), else one of the odd ones: a case
 * holds one or two oddities on average, so each can be told apart (with
 * every part odd at once, nearly all cases would be refused for the first).
 */
const usually = <T,>(plain: T, odd: readonly T[]): fc.Arbitrary<T> => fc.oneof({ arbitrary: fc.constant(plain), weight: 11 }, { arbitrary: fc.constantFrom(...odd), weight: 1 });
/** Absent 5 times in 6. */
const sometimes = <T,>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.oneof({ arbitrary: fc.constant(null), weight: 5 }, { arbitrary: arb, weight: 1 });

const METHODS = ['PUT', 'get', 'G@T', 'FOO', 'POST ', 'GET'];
const VERSIONS = ['HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1.10'];
const TE_NAMES = ['Transfer-Encoding', 'TRANSFER-ENCODING', 'transfer-encoding ', ' transfer-encoding', 'transfer_encoding', 'transfer-encoding\t', 'transfer\0encoding'];
const TE_VALUES = [' chunked', 'chunked ', 'Chunked', 'CHUNKED', 'xchunked', 'chunked, identity', 'identity, chunked', '\tchunked', 'chunk', 'chunked;q=1', '"chunked"', 'gzip, chunked', 'chunked, chunked', 'identity', '', 'chunked\x0b', '\x0cchunked', 'chunked\0'];
const CL_NAMES = ['Content-Length', 'content-length ', 'content_length', 'content-length\t', ' content-length'];
/** `#` stands for the body's real length. */
const CL_VALUES = ['0', '#,#', '#, #', '+#', '0#', ' #', '# ', '-#', '0x#', '#.0', '', '99999999999999999999', '18446744073709551617', '##', '1'];
/** `#` stands for the chunk's real size in hex. */
const CHUNK_SIZES = ['0#', '# ', ' #', '#;x', '#;x=y', '#;x="a b"', '#;\r', '#;\n', '#;\0', '#\0', '0x#', '-#', '+#', 'ffffffffffffffffff', '10000000000000005', '#\t'];
const LINE_ENDS = ['\n', '\r', '\r\r\n', '\n\r', '\r\n '];
const TRAILERS = ['x-t: 1\r\n', 'nocolon\r\n', 'x-t : 1\r\n', ' x-t: 1\r\n', 'content-length: 5\r\n', 'x-t: a\0b\r\n', 'transfer-encoding: chunked\r\n'];
const STRAY = ['\0', '\r', '\n', '\t', ' ', '\x0b', '\x7f', '\xff', ':', ',', ';', '"', '\r\n', '\r\n '];
const HOSTS = ['', 'host: app.fuzz\r\nhost: app.fuzz\r\n', 'host: a, b\r\n', 'host : app.fuzz\r\n', 'Host: app.fuzz\r\n', 'host: \r\n', 'host: app.fuzz\r\n\t.other\r\n'];
const BODIES = ['x', '0\r\n\r\n', 'GET / HTTP/1.1\r\n\r\n', ''];

/** The parts of a generated request. */
interface Shape {
  readonly method: string;
  readonly version: string;
  readonly host: string;
  /** Transfer-Encoding lines: name and value. */
  readonly te: readonly (readonly [string, string])[];
  /** Content-Length lines: name and value (# = the body's length). */
  readonly cl: readonly (readonly [string, string])[];
  /** Whether the body is written chunked: as the fields say (null), or regardless of them. */
  readonly chunked: boolean | null;
  readonly body: string;
  readonly chunkSize: string;
  readonly trailer: string;
  /** The head's line ends: one replaced with this. */
  readonly lineEnd: { readonly at: number; readonly end: string } | null;
  /** A byte put into the head at a position (in ten-thousandths of its length). */
  readonly stray: { readonly at: number; readonly byte: string } | null;
  /** The request after this one: the marker's `smuggled` GET. */
  readonly smuggle: boolean;
  readonly pieces: number;
}

const field = (names: fc.Arbitrary<string>, values: fc.Arbitrary<string>): fc.Arbitrary<readonly (readonly [string, string])[]> =>
  fc.oneof({ arbitrary: fc.constant([]), weight: 2 }, { arbitrary: fc.tuple(fc.tuple(names, values)), weight: 2 }, { arbitrary: fc.tuple(fc.tuple(names, values), fc.tuple(names, values)), weight: 1 });

const shape: fc.Arbitrary<Shape> = fc.record({
  method: usually('POST', METHODS),
  version: usually('HTTP/1.1', VERSIONS),
  host: usually('host: app.fuzz\r\n', HOSTS),
  te: field(usually('transfer-encoding', TE_NAMES), usually('chunked', TE_VALUES)),
  cl: field(usually('content-length', CL_NAMES), usually('#', CL_VALUES)),
  chunked: usually<boolean | null>(null, [true, false]),
  body: usually('hello', BODIES),
  chunkSize: usually('#', CHUNK_SIZES),
  trailer: usually('', TRAILERS),
  lineEnd: sometimes(fc.record({ at: fc.noBias(fc.nat({ max: 5 })), end: fc.constantFrom(...LINE_ENDS) })),
  // Unbiased, in ten-thousandths of the head: fast-check favours the ends of a range (and fc.double spreads
  // over the floating-point numbers, most of them tiny), and a byte at the very start only tests the sniffer.
  stray: sometimes(fc.record({ at: fc.noBias(fc.integer({ min: 0, max: 9999 })), byte: fc.constantFrom(...STRAY) })),
  smuggle: fc.boolean(),
  pieces: fc.constantFrom(1, 1, 1, 2, 3),
});

/** The bytes of a shape, for the case with marker `m`. */
export function render(s: Shape, m: string): string {
  const size = s.chunkSize.replace('#', s.body.length.toString(16));
  const chunked = s.chunked ?? s.te.length > 0;
  const body = !chunked ? s.body : s.body === '' ? `${size}\r\n${s.trailer}\r\n` : `${size}\r\n${s.body}\r\n0\r\n${s.trailer}\r\n`;
  const lines = [`${s.method} /${m}/generated ${s.version}`, ...s.host.split('\r\n').filter(Boolean)];
  for (const [name, value] of s.te) lines.push(`${name}: ${value}`);
  for (const [name, value] of s.cl) lines.push(`${name}: ${value.replaceAll('#', String(body.length))}`);
  const ends = lines.map((_, i) => (s.lineEnd !== null && s.lineEnd.at % lines.length === i ? s.lineEnd.end : '\r\n'));
  let head = lines.map((l, i) => l + ends[i]).join('');
  if (s.stray !== null) {
    // Never inside the marker: the app must still be able to tell which case a request is.
    const at = Math.floor((s.stray.at / 10000) * head.length);
    const markerEnd = head.indexOf(m) + m.length;
    const where = at > head.indexOf(m) - 1 && at < markerEnd ? markerEnd : at;
    head = head.slice(0, where) + s.stray.byte + head.slice(where);
  }
  return `${head}\r\n${body}${s.smuggle ? `GET /${m}/smuggled HTTP/1.1\r\nhost: app.fuzz\r\n\r\n` : ''}`;
}

/** `count` generated cases of `seed`, named generated/<seed>/<i>, their markers numbered from `first`. */
export function generateCases(seed: number, count: number, first: number, markerOf: (i: number) => string): RequestCase[] {
  if (count <= 0) return [];
  return fc.sample(shape, { seed, numRuns: count }).map((s, i) => ({
    side: 'request',
    id: `generated/${seed}/${i}`,
    cls: 'generated',
    bytes: render(s, markerOf(first + i)),
    ...(s.pieces > 1 ? { pieces: s.pieces } : {}),
  }));
}
