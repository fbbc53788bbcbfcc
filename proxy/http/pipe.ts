// Streams a response body to the client. stream.pipeline does the same but
// builds an AbortController and a DOMException per call, which showed up at
// several percent of the proxy's CPU; this is the part of it the proxy needs.
import type { Readable, Writable } from 'node:stream';

/** Resolves when `out` has everything; on an error or an early close, both ends are destroyed and it rejects. */
export function sendBody(body: Readable, out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      body.destroy();
      out.destroy();
      reject(e);
    };
    body.once('error', fail);
    out.once('error', fail);
    out.once('close', () => {
      if (!out.writableFinished) fail(new Error('the client closed the stream before the body was sent'));
    });
    out.once('finish', () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    body.pipe(out);
  });
}
