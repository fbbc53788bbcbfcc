// A minimal DER reader and writer: just what issuing X.509-SVIDs needs.
// Signing is the CA's hot path; building the TBSCertificate from cached
// byte templates is several times faster than a generic ASN.1 schema library.

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export class DerError extends Error {
  override name = 'DerError';
}

/** One decoded TLV: `value` is a view into the original buffer, `raw` the whole element. */
export interface Tlv {
  tag: number;
  value: Buffer;
  raw: Buffer;
}

/** Reads the TLV at `offset`; throws DerError on truncation or non-minimal forms we cannot read. */
export function readTlv(buf: Buffer, offset = 0): Tlv {
  if (offset + 2 > buf.length) throw new DerError('truncated element header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let len = buf[offset + 1]!;
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('indefinite or oversized length');
    if (offset + 2 + n > buf.length) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    head += n;
  }
  const end = offset + head + len;
  if (end > buf.length) throw new DerError('element runs past the end of its container');
  return { tag, value: buf.subarray(offset + head, end), raw: buf.subarray(offset, end) };
}

/** The children of a constructed element, in order. */
export function readChildren(value: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < value.length) {
    const t = readTlv(value, off);
    out.push(t);
    off += t.raw.length;
  }
  return out;
}

/** Reads exactly one element that fills `buf`, checking its tag. */
export function readOne(buf: Buffer, tag: number, what: string): Tlv {
  const t = readTlv(buf, 0);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${t.tag.toString(16)}`);
  if (t.raw.length !== buf.length) throw new DerError(`${what}: trailing bytes after the element`);
  return t;
}

function lengthBytes(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const seq = (...parts: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...parts);

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new DerError(`bad OID ${dotted}`);
  const bytes: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let a = Math.floor(arc / 128); a > 0; a = Math.floor(a / 128)) chunk.unshift((a & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(Tag.OID, Buffer.from(bytes));
}

export function decodeOid(value: Buffer): string {
  if (value.length === 0) throw new DerError('empty OID');
  const first = value[0]!;
  const arcs = [Math.min(2, Math.floor(first / 40)), first - Math.min(2, Math.floor(first / 40)) * 40];
  let acc = 0;
  for (const b of value.subarray(1)) {
    acc = acc * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(acc);
      acc = 0;
    }
  }
  return arcs.join('.');
}

/** A positive INTEGER from big-endian magnitude bytes. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return tlv(Tag.INTEGER, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export const bool = (v: boolean): Buffer => tlv(Tag.BOOLEAN, Buffer.from([v ? 0xff : 0x00]));
export const octets = (v: Buffer): Buffer => tlv(Tag.OCTET_STRING, v);
export const bitString = (v: Buffer): Buffer => tlv(Tag.BIT_STRING, Buffer.from([0]), v);

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050, seconds precision, Zulu. */
export function x509Time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z';
  const year = d.getUTCFullYear();
  return year < 2050 && year >= 1950
    ? tlv(Tag.UTC_TIME, Buffer.from(digits.slice(2), 'ascii'))
    : tlv(Tag.GENERALIZED_TIME, Buffer.from(digits, 'ascii'));
}

/** One X.509 extension: SEQUENCE { extnID, critical DEFAULT FALSE, extnValue }. */
export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

export function pemToDer(pem: string, label: string): Buffer {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`);
  const m = re.exec(pem);
  if (!m) throw new DerError(`no "${label}" PEM block found`);
  const body = m[1]!.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new DerError(`the ${label} PEM block is not valid base64`);
  const der = Buffer.from(body, 'base64');
  if (der.length === 0) throw new DerError(`the ${label} PEM block is empty`);
  return der;
}

/** Each `CERTIFICATE` block of a PEM text, in order, with its line end. */
export function splitPemCertificates(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => m[0] + '\n');
}

export function derToPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}
