// node:http2 costs about 1.4 MB of resident memory once loaded (its JS and
// nghttp2's pages), and most meshed apps never speak HTTP/2: the proxy loads
// it with the first HTTP/2 connection, in or out.
import type * as http2 from 'node:http2';

export type Http2 = typeof http2;

// The same strings as node:http2's constants, without loading it.
export const HTTP2_HEADER_METHOD = ':method';
export const HTTP2_HEADER_PATH = ':path';
export const HTTP2_HEADER_AUTHORITY = ':authority';
export const HTTP2_HEADER_STATUS = ':status';
export const HTTP2_HEADER_PROTOCOL = ':protocol';
export const NGHTTP2_NO_ERROR = 0;
export const NGHTTP2_CANCEL = 0x8;
export const NGHTTP2_FLAG_END_STREAM = 0x1;

let loaded: Http2 | undefined;
let loading: Promise<Http2> | undefined;

/** node:http2 if it is loaded already. */
export function loadedHttp2(): Http2 | undefined {
  return loaded;
}

export function loadHttp2(): Promise<Http2> {
  loading ??= import('node:http2').then((m) => (loaded = m));
  return loading;
}
