// Reads until a whole TLS ClientHello is buffered (it may arrive in several
// segments), then puts the bytes back for the TLS stack.
import type { Socket } from 'node:net';
import { parseClientHello, type ClientHelloResult } from '../tls/client-hello.js';

export function readClientHello(socket: Socket, head: Buffer, timeoutMs: number): Promise<ClientHelloResult & { head: Buffer }> {
  const first = parseClientHello(head);
  if (first.kind !== 'incomplete') return Promise.resolve({ ...first, head });
  // sniff() unshifted `head`; take it back and keep reading.
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (r: ClientHelloResult): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      if (buf.length > 0) socket.unshift(buf);
      resolve({ ...r, head: buf });
    };
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const r = parseClientHello(buf);
      if (r.kind !== 'incomplete') done(r);
    };
    const onEnd = (): void => done({ kind: 'not-tls' });
    const timer = setTimeout(() => done({ kind: 'not-tls' }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.resume();
  });
}
