// Moves a body from one stream to another. Readable.pipe does the same but
// registers eight listeners on the two streams, several through once()
// wrappers, and undoes them all at the end: for a gRPC message of a few
// bytes, which comes in one chunk, that was most of what moving it cost (a
// call through the HTTP/2 path pipes twice in each proxy). stream.pipeline
// builds an AbortController and a DOMException per call on top of that.
// This is the part of them the proxy needs: data written as it comes,
// paused while the destination is full, ended with the source.
import type { Readable, Writable } from 'node:stream';

/**
 * Writes `body` into `out` as it comes and ends `out` with it, pausing the
 * body while `out` is full. Stops (without destroying either) when `out`
 * closes or fails; a body that fails leaves `out` as it is: the caller
 * decides what that means (sendBody, or the request's cancellation).
 */
export function pump(body: Readable, out: Writable): void {
  if (body.readableEnded) {
    out.end();
    return;
  }
  const onData = (chunk: unknown): void => {
    if (!out.write(chunk)) body.pause();
  };
  const onDrain = (): void => {
    body.resume();
  };
  const onEnd = (): void => {
    stop();
    out.end();
  };
  const stop = (): void => {
    body.removeListener('data', onData);
    body.removeListener('end', onEnd);
    out.removeListener('drain', onDrain);
    out.removeListener('close', stop);
  };
  body.on('data', onData);
  body.on('end', onEnd);
  out.on('drain', onDrain);
  // A destination gone before the body ended (a reset stream) takes no more writes.
  out.on('close', stop);
  if (body.readableFlowing !== true) body.resume();
}

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
    // Plain listeners, never removed: each fires once at most, and both streams end with the exchange.
    body.on('error', fail);
    // A body let go of without an error (its producer gave up on it) did not end either.
    body.on('close', () => {
      if (!body.readableEnded) fail(new Error('the body ended before all of it was read'));
    });
    out.on('error', fail);
    out.on('close', () => {
      if (!out.writableFinished) fail(new Error('the client closed the stream before the body was sent'));
    });
    out.on('finish', () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    pump(body, out);
  });
}
