// The chunked decoder over a table of inputs, for requests (400) and
// responses (502), each input fed whole and in every split into pieces: what
// it accepts (and the data and trailers it hands out), what it refuses and
// with which words. Where the table notes what HAProxy 2.6 and nginx 1.22
// did with the same bytes as a response (measured on loopback, each in
// front of a raw app), the decoder is at least as strict as the stricter.
import assert from 'node:assert/strict';
import { BodyDecoder, MAX_CHUNK_LINE, MAX_TRAILER_BYTES } from './body.js';
import { HttpParseError } from './head.js';

interface Decoded {
  data: string;
  trailers: Record<string, string> | undefined;
  /** What followed the body in the input. */
  rest: string;
}

/** Feeds `wire` to a chunked decoder in pieces of `piece` bytes; what it decoded, or the error it threw. */
function decode(wire: string, status: 400 | 502, piece: number): Decoded | HttpParseError | 'incomplete' {
  const bytes = Buffer.from(wire, 'latin1');
  const d = new BodyDecoder({ kind: 'chunked' }, status);
  const data: Buffer[] = [];
  try {
    for (let i = 0; i < bytes.length; i += piece) {
      const chunk = bytes.subarray(i, i + piece);
      const stop = d.feed(chunk, 0, (b) => data.push(Buffer.from(b)));
      // (The trailers' object inherits nothing; compared as a plain one.)
      if (d.done) return { data: Buffer.concat(data).toString('latin1'), trailers: d.trailers && { ...d.trailers }, rest: chunk.subarray(stop).toString('latin1') + bytes.subarray(i + piece).toString('latin1') };
    }
  } catch (e) {
    if (e instanceof HttpParseError) return e;
    throw e;
  }
  return 'incomplete';
}

/** Inputs the decoder takes: the data and trailers it must hand out. */
const ACCEPTED: [string, string, string, Record<string, string>?][] = [
  ['one chunk', '5\r\nhello\r\n0\r\n\r\n', 'hello'],
  ['two chunks, upper- and lower-case hex', 'A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n', '0123456789abcdefghijk'],
  ['an extension', '5;name=value\r\nhello\r\n0\r\n\r\n', 'hello'],
  ['a quoted extension with a tab', '5;a="x\ty";b\r\nhello\r\n0;last\r\n\r\n', 'hello'],
  ['whitespace before the ";" of an extension (BWS)', '5 \t;a=b\r\nhello\r\n0\r\n\r\n', 'hello'],
  // HAProxy and nginx take these too.
  ['leading zeros in the size', '000000000000000000005\r\nhello\r\n0\r\n\r\n', 'hello'],
  ['trailers', '5\r\nhello\r\n0\r\nX-Sum: abc\r\nx-sum:  more \t\r\nx-empty:\r\n\r\n', 'hello', { 'x-sum': 'abc, more', 'x-empty': '' }],
  ['trailers that may not be trailers, dropped', '5\r\nhello\r\n0\r\ncontent-length: 5\r\nhost: evil\r\nx-ok: 1\r\n\r\n', 'hello', { 'x-ok': '1' }],
  ['obs-text in a trailer value', '0\r\nx-latin: caf\xe9\xa0\r\n\r\n', '', { 'x-latin': 'caf\xe9\xa0' }],
];

/** Inputs the decoder refuses, with the words its error must hold. HAProxy / nginx: what each did with the input as a response. */
const REFUSED: [string, string, RegExp, string][] = [
  ['a bad chunk size', '5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n', /bad chunk size: "z" where a hex digit must be/, '502 / 502'],
  ['a chunk size that overflows', 'fffffffffffffffff\r\nabc\r\n0\r\n\r\n', /chunk size is larger than 9007199254740991 bytes/, '502 / 502'],
  ['a chunk size past 2^53 - 1', '20000000000000\r\n', /chunk size is larger than/, 'both take it'],
  ['a "0x" prefix', '0x5\r\nhello\r\n0\r\n\r\n', /bad chunk size: "x" after its hex digits/, '502 / 502'],
  ['a sign', '+5\r\nhello\r\n0\r\n\r\n', /bad chunk size: "\+" where a hex digit must be/, '502 / 502'],
  ['an empty chunk-size line', '\r\nhello\r\n0\r\n\r\n', /an empty chunk-size line/, '502 / 502'],
  ['a space inside the size', '5 5\r\nhello\r\n0\r\n\r\n', /bad chunk size: "5" after its hex digits and whitespace/, '502 / 502'],
  ['a space before the size', ' 5\r\nhello\r\n0\r\n\r\n', /whitespace before a chunk size/, '502 / 502'],
  ['a tab before the size', '\t1\r\nh\r\n0\r\n\r\n', /whitespace before a chunk size/, '502 / 502'],
  ['a space after the size', '1 \r\nh\r\n0\r\n\r\n', /whitespace after a chunk size with no extension after it/, 'both take it'],
  ['a tab after the size', '1\t\r\nh\r\n0\r\n\r\n', /whitespace after a chunk size with no extension after it/, 'both take it'],
  ['a bare CR in a chunk extension', '5;a\rb\r\nhello\r\n0\r\n\r\n', /a bare CR in a chunk-size line/, '502 / 502'],
  ['a control character in a chunk extension', '5;a\x01b\r\nhello\r\n0\r\n\r\n', /a control character \(0x01\) in a chunk extension/, 'both take it'],
  ['a NUL in a chunk extension', '5;a\x00\r\nhello\r\n0\r\n\r\n', /a control character \(0x00\) in a chunk extension/, 'both take it'],
  ['a DEL in a chunk extension', '5;a\x7f\r\nhello\r\n0\r\n\r\n', /a control character \(0x7f\) in a chunk extension/, 'both take it'],
  ['a bare LF after a chunk size', '5\nhello\r\n0\r\n\r\n', /a chunk-size line ends in a bare LF/, 'both take it'],
  ['a bare LF after an extension', '5;a\nhello\r\n0\r\n\r\n', /a chunk-size line ends in a bare LF/, 'both take it'],
  ['a chunk longer than its size', '5\r\nhelloXX\r\n0\r\n\r\n', /a chunk is not followed by CRLF \("X" after its data/, '502 / 502'],
  ['a bare LF after chunk data', '5\r\nhello\n0\r\n\r\n', /a chunk's data is followed by a bare LF/, 'both take it'],
  ['a bare CR after chunk data', '5\r\nhello\r0\r\n\r\n', /a chunk is not followed by CRLF \(a bare CR, then "0"\)/, '502 / 502'],
  ['a trailer line without a colon', '5\r\nhello\r\n0\r\nx-no-colon\r\n\r\n', /a trailer line without a colon: "x-no-colon"/, '—'],
  ['a trailer line of words without a colon', '5\r\nhello\r\n0\r\nnot a field\r\n\r\n', /whitespace in or after the name of a trailer field: "not "/, 'HAProxy 502, nginx takes it'],
  ['whitespace before the colon of a trailer', '0\r\nx-a : 1\r\n\r\n', /whitespace in or after the name of a trailer field: "x-a "/, 'HAProxy 502, nginx takes it'],
  ['obs-fold in the trailers', '0\r\nx-a: 1\r\n 2\r\n\r\n', /a trailer line begins with whitespace \(obs-fold is refused\)/, 'both take it'],
  ['a control character in a trailer value', '0\r\nx-a: 1\x01\r\n\r\n', /a control character \(0x01\) in the value of a trailer field/, 'both take it'],
  ['a bare LF ending a trailer line', '0\r\nx-a: 1\n\r\n', /a trailer line ends in a bare LF/, 'both take it'],
  ['a bare LF ending the trailer section', '0\r\n\n', /a trailer section ends in a bare LF/, 'both take it'],
  ['a bare LF ending the chunked body', '5\nhello\n0\n\n', /a chunk-size line ends in a bare LF/, 'both take it'],
  ['a bare CR in a trailer value', '0\r\nx-a: 1\r2\r\n\r\n', /a bare CR in a trailer field \("2" after it\)/, '—'],
  ['a trailer name with a bad byte', '0\r\nx-a@: 1\r\n\r\n', /"@" in the name of a trailer field/, '—'],
  ['a chunk-size line that goes on for ever', `5\r\nhello\r\n${'0'.repeat(MAX_CHUNK_LINE + 1)}`, new RegExp(`a chunk-size line is longer than ${MAX_CHUNK_LINE} bytes`), 'HAProxy 502, nginx waits for its read timeout'],
  ['an extension that goes on for ever', `5;${'a'.repeat(MAX_CHUNK_LINE)}`, new RegExp(`a chunk-size line is longer than ${MAX_CHUNK_LINE} bytes`), 'HAProxy 502, nginx waits for its read timeout'],
  ['a trailer section that goes on for ever', `0\r\n${'x-a: 1\r\n'.repeat(MAX_TRAILER_BYTES / 8 + 1)}`, new RegExp(`the trailer section is longer than ${MAX_TRAILER_BYTES} bytes`), '—'],
];

const pieces = (wire: string): number[] => (wire.length > 200 ? [1, 7, 1000, wire.length] : Array.from({ length: wire.length }, (_, i) => i + 1));

describe('the chunked decoder', () => {
  for (const [name, wire, data, trailers] of ACCEPTED) {
    it(`takes ${name}, however the bytes are split`, () => {
      for (const piece of pieces(wire)) {
        const got = decode(`${wire}NEXT`, 400, piece);
        assert.deepEqual(got, { data, trailers, rest: 'NEXT' }, `in pieces of ${piece}`);
      }
    });
  }

  for (const [name, wire, words, others] of REFUSED) {
    it(`refuses ${name} (HAProxy / nginx: ${others})`, () => {
      for (const status of [400, 502] as const) {
        for (const piece of pieces(wire)) {
          const got = decode(wire, status, piece);
          assert.ok(got instanceof HttpParseError, `in pieces of ${piece}: ${JSON.stringify(got)}`);
          assert.equal(got.status, status);
          assert.match(got.message, /^malformed chunked body: .* \(RFC 9112 7\.1\)$/);
          assert.match(got.message, words, `in pieces of ${piece}`);
        }
      }
    });
  }

  it('refuses at the first byte that breaks the framing, before the line ends', () => {
    // A peer that sends a bad byte and then nothing must not leave the proxy waiting for a line end.
    for (const wire of ['z', '5 x', '5;\x01', '5\r\nhello!', '0\r\nname\r', '0\r\n x', '1\r\na\r\r']) {
      assert.ok(decode(wire, 502, wire.length) instanceof HttpParseError, JSON.stringify(wire));
    }
    assert.equal(decode('5;a=b\r\nhel', 502, 3), 'incomplete');
  });
});
