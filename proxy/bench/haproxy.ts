// HAProxy configurations for `npm run bench:sidecar`: the upstream app, and
// the comparator, a pair of HAProxy sidecars doing what a tsmesh pair does.
//
// The upstream answers every request with the same body from memory, after
// reading the request body (http-buffer-request), on keep-alive connections:
// a fast, fixed server, identical in the three runs.
//
// The sidecar pair sits on the same redirects as tsmesh (tsmesh init, uid
// 1337): the client side takes plain HTTP on 15001 and opens TLS 1.3 to the
// server pod with its client certificate, verifying the server's chain
// against the mesh roots; the server side terminates TLS on 15006, requires
// and verifies a client certificate, and sends plain HTTP to the app on
// 127.0.0.1. Both in mode http with keep-alive and idle-connection reuse
// (http-reuse always), one thread each, as the tsmesh proxy runs one event
// loop. HAProxy verifies chains but not SPIFFE IDs (it has no URI SAN check);
// tsmesh also checks that the server's SPIFFE ID is the expected one.

const COMMON = (threads: number): string => `global
  nbthread ${threads}
  maxconn 4096
  log stderr format short local0 err

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 10s
`;

export function upstreamConfig(port: number, bodyFile: string): string {
  return `${COMMON(1)}
frontend app
  bind 0.0.0.0:${port}
  option http-buffer-request
  http-request return status 200 content-type application/octet-stream file ${bodyFile}
`;
}

export interface SidecarTls {
  /** Certificate chain and private key in one PEM file (HAProxy's crt). */
  certAndKey: string;
  /** The mesh roots. */
  bundle: string;
}

/** The client pod's sidecar: plain HTTP in on the outbound capture port, mTLS out to the server pod. */
export function clientSidecarConfig(outboundPort: number, server: string, appPort: number, tls: SidecarTls): string {
  return `${COMMON(1)}
frontend outbound
  bind 0.0.0.0:${outboundPort}
  default_backend mesh

backend mesh
  http-reuse always
  server upstream ${server}:${appPort} ssl verify required ca-file ${tls.bundle} crt ${tls.certAndKey} ssl-min-ver TLSv1.3 alpn http/1.1 pool-max-conn 256 pool-purge-delay 60s
`;
}

/** The server pod's sidecar: mTLS in on the inbound capture port, plain HTTP to the app on loopback. */
export function serverSidecarConfig(inboundPort: number, appPort: number, tls: SidecarTls): string {
  return `${COMMON(1)}
frontend inbound
  bind 0.0.0.0:${inboundPort} ssl crt ${tls.certAndKey} ca-file ${tls.bundle} verify required ssl-min-ver TLSv1.3 alpn http/1.1
  default_backend app

backend app
  http-reuse always
  server app 127.0.0.1:${appPort} pool-max-conn 256 pool-purge-delay 60s
`;
}

// The opaque TCP pair of --churn: what a tsmesh pair does with a port
// declared tcp. mode tcp, so each connection of the app is one TLS connection
// between the sidecars and one to the app (no pooling to hide the cost of a
// connection). Resumption is HAProxy's default on both ends: the client's
// server line reuses the last TLS session with it (ssl-reuse), and the
// server's bind keeps a session cache and issues TLS tickets. Like the HTTP
// pair, it verifies chains but not SPIFFE IDs.
const TCP_COMMON = `global
  nbthread 1
  maxconn 4096
  log stderr format short local0 err

defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;

/** The client pod's sidecar for opaque TCP: bytes in on the outbound capture port, a new mTLS connection to the server pod for each. */
export function clientTcpSidecarConfig(outboundPort: number, server: string, appPort: number, tls: SidecarTls): string {
  return `${TCP_COMMON}
frontend outbound
  bind 0.0.0.0:${outboundPort}
  default_backend mesh

backend mesh
  server upstream ${server}:${appPort} ssl verify required ca-file ${tls.bundle} crt ${tls.certAndKey} ssl-min-ver TLSv1.3 alpn tsmesh/tcp
`;
}

/** The server pod's sidecar for opaque TCP: mTLS in on the inbound capture port, a new connection to the app on loopback for each. */
export function serverTcpSidecarConfig(inboundPort: number, appPort: number, tls: SidecarTls): string {
  return `${TCP_COMMON}
frontend inbound
  bind 0.0.0.0:${inboundPort} ssl crt ${tls.certAndKey} ca-file ${tls.bundle} verify required ssl-min-ver TLSv1.3 alpn tsmesh/tcp
  default_backend app

backend app
  server app 127.0.0.1:${appPort}
`;
}
