// HTTP/2 trailers, both ways: a stream's peer sends them after its body (gRPC
// puts its status there), and a stream the proxy writes, opened with
// waitForTrailers, ends with the trailers of the message it forwards.
import type { Http2Stream, IncomingHttpHeaders } from 'node:http2';
import { emptyHeaders, endToEndHeaders, type TrailerSource } from './types.js';

/** The trailers a stream's peer sends after its body, from the stream's 'trailers' event. */
export function trailersOf(stream: Http2Stream): TrailerSource {
  let fields: IncomingHttpHeaders | undefined;
  stream.once('trailers', (t: IncomingHttpHeaders) => (fields = t));
  return () => fields;
}

/**
 * Ends a stream held open for its trailers: these fields, or (none, or none
 * left once connection-specific ones are removed) an empty DATA frame with
 * END_STREAM, which is what node:http2 sends for empty trailers.
 */
export function sendTrailers(stream: Http2Stream, fields: Record<string, string | string[] | undefined> | undefined): void {
  if (stream.destroyed || stream.closed) return;
  const out = emptyHeaders<Record<string, string | string[]>>();
  if (fields) {
    for (const [k, v] of Object.entries(endToEndHeaders(fields as IncomingHttpHeaders))) {
      if (v !== undefined && !k.startsWith(':')) out[k] = v;
    }
  }
  try {
    stream.sendTrailers(out);
  } catch {
    // A trailer node:http2 refuses (a bad name or value): the stream ends without it rather than hanging.
    try {
      stream.sendTrailers({});
    } catch {
      stream.destroy();
    }
  }
}
