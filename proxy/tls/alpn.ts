import { TAP_ALPN } from '../../contract/tap.js';

// ALPN protocol IDs that mark a connection as mesh traffic between two tsmesh
// proxies, and say what it carries. An inbound connection whose ClientHello
// offers none of them is not ours (it is the app's own TLS, or plain traffic).
export const MESH_ALPN = {
  /** HTTP/1.1 connections as streams of one connection (net/mux.ts); listed first, a server prefers it to http1. */
  mux: 'tsmesh/mux',
  http1: 'tsmesh/h1',
  /**
   * HTTP/2 requests as frames of the proxy's own (http/h2-frames.ts, a
   * prototype): offered, with http2, only under TSMESH_H2_FRAMES. Listed
   * before http2: a server picks by its own order, so a caller offering both
   * gets it.
   */
  frames: 'tsmesh/h2f',
  http2: 'tsmesh/h2',
  /**
   * Opaque TCP connections to one port as streams of one connection
   * (net/tcp-mux.ts); offered with tcp, listed before it: a proxy that
   * predates it picks tcp, and the connection is carried alone as before.
   */
  tcpMux: 'tsmesh/tcp-mux',
  tcp: 'tsmesh/tcp',
  /** The control plane's tap of this proxy's requests (tap/hub.ts); served to the control plane's identity only. */
  tap: TAP_ALPN,
} as const;

export type MeshAlpn = (typeof MESH_ALPN)[keyof typeof MESH_ALPN];
export const MESH_ALPN_LIST: readonly string[] = Object.values(MESH_ALPN);

export function isMeshAlpn(p: string | false | null | undefined): p is MeshAlpn {
  return typeof p === 'string' && MESH_ALPN_LIST.includes(p);
}
