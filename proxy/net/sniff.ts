// Decides what a new connection speaks from its first bytes, then puts the
// bytes back so the next stage reads the stream from its start.
//
// On a port whose protocol is detected (auto), the rule, first match wins:
//  - no byte within the sniff timeout: silent (a server-first protocol:
//    MySQL, SMTP, SSH), carried as opaque TCP;
//  - first byte 0x16, a TLS handshake record: tls (the app's own TLS, or
//    the mesh's on the inbound port);
//  - the 24 bytes of the HTTP/2 preface: http2 (waiting while the bytes are
//    a proper prefix of it);
//  - the start of an HTTP/1.x request line, after any empty lines:
//    `method SP target SP HTTP/d.d`, the method any token (PROPFIND, REPORT,
//    a lowercase "get", a method of 20 letters or more: the HTTP server
//    forwards what it does not know, as RFC 9110 9.1 has a proxy do), the
//    target any visible bytes: http1 at the version's last digit;
//  - not-HTTP (opaque TCP) at the first byte that breaks that line: a byte
//    that is not a token character before the first space, a control byte
//    or an empty target, anything but "HTTP/" digit "." digit after the
//    target's space. So "G@T /", a tab after the method, a line ending
//    before the version (Redis's and memcached's inline commands, an SSH
//    banner), binary bytes, an SSLv2 hello or a space first are opaque;
//  - bytes that still may be either when the sniff timeout passes or the
//    client half-closes (a head paused mid-method: "GE", then nothing), or
//    a request line longer than MAX_REQUEST_LINE_SNIFF: http1, whose server
//    then applies its header timeout and answers what it cannot read.
// A port declared http or http2 is never downgraded to opaque TCP: its
// connections are HTTP/2 when they bring the preface and HTTP/1.1 otherwise,
// whatever the bytes, and the HTTP/1.1 server answers 400 to bytes that
// cannot begin a request (a TLS hello among them), 408 to a head that never
// ends, and closes a silent connection at its header timeout.
import type { Socket } from 'node:net';
import type { PortProtocol } from '../../contract/vocabulary.js';
import { RequestLineScanner } from '../http/h1/head.js';

export type Protocol = 'tls' | 'http2' | 'http1' | 'opaque';

export interface Sniffed {
  /** 'silent': the client sent nothing within the timeout (a server-first protocol). */
  protocol: Protocol | 'silent' | 'closed';
  head: Buffer;
}

export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/**
 * A request line still unfinished after this many bytes is taken for HTTP/1
 * (a long URL): what a waiting connection may hold, and about as much as
 * Linkerd's detection reads.
 */
export const MAX_REQUEST_LINE_SNIFF = 8 * 1024;

/** Whether the port's protocol is detected, or declared HTTP (http, http2): then nothing is opaque. */
export type PortKind = 'auto' | 'declared-http';

/** The kind of a port of this protocol (undefined: not known, so detected). */
export const portKind = (protocol: PortProtocol | undefined): PortKind => (protocol === 'http' || protocol === 'http2' ? 'declared-http' : 'auto');

/** Takes a connection's bytes as they come and says what they are as soon as it can (the rule above). */
export class Detector {
  private seen = 0;
  /** The bytes so far are a prefix of the HTTP/2 preface. */
  private preface = true;
  private readonly line = new RequestLineScanner();

  constructor(private readonly kind: PortKind) {}

  /** The verdict once `chunk` has come after the bytes before it; undefined while more bytes are needed. */
  push(chunk: Buffer): Protocol | undefined {
    if (chunk.length === 0) return undefined;
    if (this.seen === 0 && chunk[0] === 0x16 && this.kind === 'auto') return 'tls';
    if (this.preface) {
      const n = Math.min(chunk.length, HTTP2_PREFACE.length - this.seen);
      if (chunk.compare(HTTP2_PREFACE, this.seen, this.seen + n, 0, n) !== 0) this.preface = false;
      else if (this.seen + n === HTTP2_PREFACE.length) return 'http2';
    }
    this.seen += chunk.length;
    // Every byte goes through the line's reading, the preface's too: once they part, the line was read from its start.
    const verdict = this.line.scan(chunk, 0, chunk.length);
    if (this.preface) return undefined;
    if (this.kind === 'declared-http') return 'http1';
    if (verdict === 'request') return 'http1';
    if (verdict === 'not-request') return 'opaque';
    return this.seen >= MAX_REQUEST_LINE_SNIFF ? 'http1' : undefined;
  }

  /** The verdict when no more bytes will be waited for (the timeout passed, or the client ended its side). */
  settle(): Protocol | 'silent' {
    // Undecided bytes are a request line begun, or a part of the HTTP/2 preface: the HTTP/1.1 server takes them.
    return this.seen === 0 ? 'silent' : 'http1';
  }
}

/** What `head` tells on a port of this kind, or undefined when more bytes are needed. */
export function classify(head: Buffer, kind: PortKind = 'auto'): Protocol | undefined {
  return new Detector(kind).push(head);
}

/**
 * Reads until the protocol is known or `timeoutMs` passes. The socket is left
 * paused with the bytes read unshifted back into it.
 */
export function sniff(socket: Socket, timeoutMs: number, kind: PortKind = 'auto'): Promise<Sniffed> {
  return new Promise((resolve) => {
    const detector = new Detector(kind);
    const chunks: Buffer[] = [];
    const finish = (protocol: Sniffed['protocol']): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (head.length > 0 && protocol !== 'closed') socket.unshift(head);
      resolve({ protocol, head });
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      const p = detector.push(chunk);
      if (p) finish(p);
    };
    const onEnd = (): void => {
      const p = detector.settle();
      finish(p === 'silent' ? 'closed' : p);
    };
    const timer = setTimeout(() => finish(detector.settle()), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onEnd);
  });
}
