// The gRPC client of a pod in the gRPC tests (test/netns/grpc.test.ts), run
// as uid 1000 so its connections take the redirect to its pod's proxy. One
// channel to TARGET for its whole life; each JSON line on stdin is one call
// (an Operation of test/netns/grpc-calls.ts with an "id"), answered, when it
// ends, with one JSON line: {"id", ...CallResult}. Calls run concurrently.
// Usage: node --import tsx test/netns/grpc-client.ts HOST:PORT
// Prints {"ready":true} at once.
import { createInterface } from 'node:readline';
import { echoClient, runOperation, type Operation } from './grpc-calls.js';

const [target = '127.0.0.1:50051'] = process.argv.slice(2);
const client = echoClient(target);
const print = (entry: object): void => void process.stdout.write(JSON.stringify(entry) + '\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return;
  let call: Operation & { id: number };
  try {
    call = JSON.parse(line) as Operation & { id: number };
  } catch (e) {
    print({ error: (e as Error).message });
    return;
  }
  void runOperation(client, call).then((r) => print({ id: call.id, ...r, replies: r.replies.map(({ pad, ...rest }) => (pad === undefined ? rest : { ...rest, padLength: pad.length })) }));
});
print({ ready: true });
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
