// Decides what a new connection speaks from its first bytes, then puts the
// bytes back so the next stage reads the stream from its start.
import type { Socket } from 'node:net';

export type Protocol = 'tls' | 'http2' | 'http1' | 'opaque';

export interface Sniffed {
  /** 'silent': the client sent nothing within the timeout (a server-first protocol). */
  protocol: Protocol | 'silent' | 'closed';
  head: Buffer;
}

export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'].map((m) => Buffer.from(m + ' ', 'latin1'));
const MAX_SNIFF_BYTES = 24;

/** What `head` tells, or undefined when more bytes are needed. */
export function classify(head: Buffer): Protocol | undefined {
  if (head.length === 0) return undefined;
  if (head[0] === 0x16) return 'tls';
  const n = Math.min(head.length, HTTP2_PREFACE.length);
  if (head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n))) return head.length >= HTTP2_PREFACE.length ? 'http2' : undefined;
  let maybeMethod = false;
  for (const m of METHODS) {
    const k = Math.min(head.length, m.length);
    if (head.subarray(0, k).equals(m.subarray(0, k))) {
      if (head.length >= m.length) return 'http1';
      maybeMethod = true;
    }
  }
  if (maybeMethod && head.length < MAX_SNIFF_BYTES) return undefined;
  return 'opaque';
}

/**
 * Reads until the protocol is known or `timeoutMs` passes. The socket is left
 * paused with the bytes read unshifted back into it.
 */
export function sniff(socket: Socket, timeoutMs: number): Promise<Sniffed> {
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    const finish = (protocol: Sniffed['protocol']): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      if (head.length > 0 && protocol !== 'closed') socket.unshift(head);
      resolve({ protocol, head });
    };
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const p = classify(head);
      if (p) finish(p);
    };
    const onEnd = (): void => finish(head.length > 0 ? (classify(head) ?? 'opaque') : 'closed');
    const timer = setTimeout(() => finish(head.length > 0 ? (classify(head) ?? 'opaque') : 'silent'), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onEnd);
  });
}
