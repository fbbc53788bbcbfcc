// The least a node:http2 proxy does, for `tsx proxy/bench/grpc-cpu.ts` to
// show what node:http2 itself costs beside the sidecars: each stream it
// serves is sent on as a stream of one session to the next hop, its body
// piped, the answer's head, body and trailers sent back. No routing, no
// layers, no metrics, no error handling beyond resetting the stream.
//   node --import tsx proxy/bench/h2-relay.ts SETUP.json
// SETUP.json: { listen: {port, tls?: {cert, key, ca}}, upstream: {port, tls?} }
// (PEM text; with tls, mTLS with ALPN h2). Prints "ready PORT".
import { readFileSync } from 'node:fs';
import { connect, createSecureServer, createServer, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

interface Tls {
  cert: string;
  key: string;
  ca: string;
}
export interface RelaySetup {
  listen: { port: number; tls?: Tls };
  upstream: { port: number; tls?: Tls };
}

const setup = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as RelaySetup;
const up = setup.upstream;
let session: ClientHttp2Session | undefined;
const upstream = (): ClientHttp2Session => {
  if (session && !session.closed && !session.destroyed) return session;
  const tls = up.tls;
  session = tls
    ? connect(`https://127.0.0.1:${up.port}`, { createConnection: () => tlsConnect({ host: '127.0.0.1', port: up.port, ...tls, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }) })
    : connect(`http://127.0.0.1:${up.port}`);
  session.on('error', () => undefined);
  return session;
};

const relay = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
  stream.on('error', () => stream.destroy());
  const out: Record<string, string | string[]> = {};
  for (const k in headers) if (k !== ':scheme' && headers[k] !== undefined) out[k] = headers[k]!;
  const req = upstream().request(out, { endStream: stream.readableEnded, waitForTrailers: true });
  req.on('error', () => stream.close(2));
  req.once('wantTrailers', () => req.sendTrailers({}));
  stream.pipe(req);
  let trailers: IncomingHttpHeaders = {};
  req.once('trailers', (t: IncomingHttpHeaders) => (trailers = t));
  req.once('response', (h: IncomingHttpHeaders, flags: number) => {
    if (stream.destroyed) return;
    const head: Record<string, string | string[]> = {};
    for (const k in h) if (h[k] !== undefined) head[k] = h[k]!;
    if (flags & 1) return stream.respond(head, { endStream: true });
    stream.respond(head, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    req.pipe(stream);
  });
};

const server = setup.listen.tls
  ? createSecureServer({ ...setup.listen.tls, requestCert: true, rejectUnauthorized: true, settings: { maxConcurrentStreams: 1000 } })
  : createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', relay);
server.on('sessionError', () => undefined);
server.listen(setup.listen.port, '127.0.0.1', () => console.log(`ready ${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
