// Streams a response body to the client. stream.pipeline does the same but
// builds an AbortController and a DOMException per call, which showed up at
// several percent of the proxy's CPU; this is the part of it the proxy needs.
import type { Readable, Writable } from 'node:stream';

/**
 * Resolves when `out` has everything; on an error or an early close, both
 * ends are destroyed and it rejects. `out` is destroyed with the error, so
 * that an HTTP/2 stream is reset (RST_STREAM INTERNAL_ERROR): destroyed
 * without one it ends with NO_ERROR, which a client reads as a whole body.
 */
export function sendBody(body: Readable, out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      body.destroy();
      out.destroy(e);
      reject(e);
    };
    if (body.destroyed) {
      // Failed before anyone read it: nothing of it can go out.
      fail(body.errored ?? new Error('the body ended before all of it was read'));
      return;
    }
    body.once('error', fail);
    // A body let go of without an error (its producer gave up on it) did not end either.
    body.once('close', () => {
      if (!body.readableEnded) fail(new Error('the body ended before all of it was read'));
    });
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
