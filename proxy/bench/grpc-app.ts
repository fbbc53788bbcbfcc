// The app of `npm run bench:grpc`: a gRPC unary server reduced to what every
// run needs, on node:http2 (h2c): each call's request message is read whole,
// then answered with a fixed message and grpc-status 0 in the trailers, the
// shape of a real unary answer (head, DATA, trailers), the same in every run.
//   node proxy/bench/grpc-app.ts PORT REPLY_BYTES
// Prints "ready" once it listens.
import { createServer, type ServerHttp2Stream } from 'node:http2';

const [portText = '50051', replyText = '64'] = process.argv.slice(2);
const replyBytes = Number(replyText);
const reply = Buffer.alloc(5 + replyBytes, 'r');
reply[0] = 0;
reply.writeUInt32BE(replyBytes, 1);

const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream: ServerHttp2Stream) => {
  stream.on('error', () => stream.destroy());
  stream.on('data', () => undefined);
  stream.on('end', () => {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(reply);
  });
});
server.on('sessionError', () => undefined);
server.listen(Number(portText), '0.0.0.0', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
