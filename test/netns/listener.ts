// A stand-in for the proxy and the app inside a test namespace: listens on the
// given ports (dual-stack) and answers every connection with one JSON line
// saying who answered, on which port, and the original destination it read
// with SO_ORIGINAL_DST (null when the connection was not redirected).
// Usage: node --import tsx test/netns/listener.ts NAME PORT[,PORT...]
// Prints "ready" once every port listens.
import { createServer, type Socket } from 'node:net';
import { originalDestination, OriginalDestinationError } from '../../proxy/orig-dst.js';

const [name = 'listener', portList = ''] = process.argv.slice(2);
const ports = portList.split(',').map(Number);

function report(socket: Socket, port: number): string {
  let original: unknown = null;
  let error: string | undefined;
  try {
    original = originalDestination(socket);
  } catch (e) {
    if (!(e instanceof OriginalDestinationError)) throw e;
    error = e.message;
  }
  return JSON.stringify({
    name,
    listener: port,
    local: { address: socket.localAddress, port: socket.localPort },
    remote: { address: socket.remoteAddress, port: socket.remotePort },
    original,
    ...(error === undefined ? {} : { originalError: error }),
  });
}

let listening = 0;
for (const port of ports) {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.end(report(socket, port) + '\n');
  });
  server.listen({ port, host: '::', ipv6Only: false }, () => {
    if (++listening === ports.length) console.log('ready');
  });
}
process.on('SIGTERM', () => process.exit(0));
