// HTTP/2 trailers, both ways: a stream's peer sends them after its body (gRPC
// puts its status there), and a stream the proxy writes, opened with
// waitForTrailers, ends with the trailers of the message it forwards.
import type { Http2Stream, IncomingHttpHeaders } from 'node:http2';
import { copyEndToEnd, emptyHeaders, type TrailerSource } from './types.js';

/** The trailers a stream's peer sends after its body, from the stream's 'trailers' event. */
export function trailersOf(stream: Http2Stream): TrailerSource {
  let fields: IncomingHttpHeaders | undefined;
  stream.on('trailers', (t: IncomingHttpHeaders) => (fields = t));
  return () => fields;
}

/**
 * Ends a stream held open for its trailers: these fields, or (none, or none
 * left once connection-specific ones are removed) an empty DATA frame with
 * END_STREAM, which is what node:http2 sends for empty trailers.
 */
export function sendTrailers(stream: Http2Stream, fields: Record<string, string | string[] | undefined> | undefined): void {
  if (stream.destroyed || stream.closed) return;
  const out = emptyHeaders<Record<string, string | string[] | undefined>>();
  if (fields) copyEndToEnd(fields as IncomingHttpHeaders, out, true);
  try {
    stream.sendTrailers(out as Record<string, string | string[]>);
  } catch {
    // A trailer node:http2 refuses (a bad name or value): the stream ends without it rather than hanging.
    try {
      stream.sendTrailers({});
    } catch {
      stream.destroy();
    }
  }
}
