// Reads the ALPN list and SNI from a TLS ClientHello without terminating TLS,
// so inbound can tell mesh TLS (ours to terminate) from the app's own TLS
// (to pass through untouched). RFC 8446 §4.1.2, RFC 7301, RFC 6066 §3.

export type ClientHelloResult =
  | { kind: 'not-tls' }
  | { kind: 'incomplete' }
  | { kind: 'client-hello'; alpn: string[]; serverName: string | undefined };

/** Largest ClientHello we wait for; real ones are well under 2 KiB (post-quantum key shares ~1.5 KiB). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;

export function looksLikeTls(buf: Buffer): boolean {
  return buf.length >= 1 && buf[0] === HANDSHAKE && (buf.length < 2 || buf[1] === 0x03);
}

export function parseClientHello(buf: Buffer): ClientHelloResult {
  if (!looksLikeTls(buf)) return { kind: 'not-tls' };
  if (buf.length < 5) return { kind: 'incomplete' };
  const recordLength = buf.readUInt16BE(3);
  // The ClientHello may span records; we read only the first, which holds it in practice.
  if (buf.length < 5 + recordLength) return buf.length >= MAX_CLIENT_HELLO_BYTES ? { kind: 'not-tls' } : { kind: 'incomplete' };
  const body = buf.subarray(5, 5 + recordLength);
  try {
    return readHello(body);
  } catch {
    return { kind: 'not-tls' };
  }
}

function readHello(b: Buffer): ClientHelloResult {
  if (b[0] !== CLIENT_HELLO) return { kind: 'not-tls' };
  let off = 4; // type(1) + length(3)
  off += 2 + 32; // legacy_version, random
  off += 1 + b[off]!; // session id
  off += 2 + b.readUInt16BE(off); // cipher suites
  off += 1 + b[off]!; // compression methods
  const alpn: string[] = [];
  let serverName: string | undefined;
  if (off >= b.length) return { kind: 'client-hello', alpn, serverName };
  const extEnd = off + 2 + b.readUInt16BE(off);
  off += 2;
  while (off + 4 <= extEnd) {
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    const data = b.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    if (type === EXT_ALPN) {
      let p = 2;
      while (p < data.length) {
        const n = data[p]!;
        alpn.push(data.subarray(p + 1, p + 1 + n).toString('latin1'));
        p += 1 + n;
      }
    } else if (type === EXT_SERVER_NAME && data.length > 5 && data[2] === 0) {
      serverName = data.subarray(5, 5 + data.readUInt16BE(3)).toString('latin1');
    }
  }
  return { kind: 'client-hello', alpn, serverName };
}
