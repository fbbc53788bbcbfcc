// The gRPC app of a pod in the gRPC tests (test/netns/grpc.test.ts): Echo
// and grpc.health.v1.Health (test/netns/grpc-service.ts) in plaintext, as
// uid 1000 in its pod's namespace. Every call and every cancellation it sees
// is a JSON line on stdout, so the test knows what reached the app. A JSON
// line on stdin sets the health of a service and is acknowledged:
//   {"health": {"service": "", "status": "NOT_SERVING"}}  ->  {"event":"control",...}
// Usage: node --import tsx test/netns/grpc-app.ts PORT [NAME]
// Prints {"ready":true} once it listens.
import { createInterface } from 'node:readline';
import { startEchoServer, SERVING_STATUS, type ServingStatusName } from './grpc-service.js';

const [port = '50051', name = 'echo'] = process.argv.slice(2);
const log = (entry: object): void => void process.stdout.write(JSON.stringify({ at: Date.now(), ...entry }) + '\n');
const server = await startEchoServer(name, '0.0.0.0', Number(port), log);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return;
  try {
    const command = JSON.parse(line) as { health?: { service: string; status: ServingStatusName } };
    if (command.health) {
      if (!(command.health.status in SERVING_STATUS)) throw new Error(`unknown status ${command.health.status}`);
      server.setHealth(command.health.service, command.health.status);
    }
    log({ event: 'control', ...command });
  } catch (e) {
    log({ event: 'control', error: (e as Error).message });
  }
});
log({ ready: true, port: server.port });
process.on('SIGTERM', () => process.exit(0));
