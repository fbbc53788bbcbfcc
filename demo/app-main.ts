// One demo app as a process of its own, for a pod's network namespace:
//   app-main.ts app NAME PORT UPSTREAMS_JSON   serves createApp on 0.0.0.0:PORT
//   app-main.ts load URL RPS                   the traffic generator
// It prints {"ready":true} once serving; the generator prints its counts as a
// JSON line every 250 ms and stops sending when "stop" arrives on stdin.
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createApp, startLoad, type Upstreams } from './apps.js';

const [kind, ...args] = process.argv.slice(2);

if (kind === 'app') {
  const [name, port, upstreams] = args;
  const server = createApp(name!, JSON.parse(upstreams ?? '{}') as Upstreams);
  server.listen(Number(port), '0.0.0.0');
  await once(server, 'listening');
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close();
  });
} else if (kind === 'load') {
  const [url, rps] = args;
  const load = startLoad(url!, Number(rps));
  const report = setInterval(() => console.log(JSON.stringify(load.counts)), 250);
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stop') load.stop();
  });
  process.once('SIGTERM', () => {
    load.stop();
    clearInterval(report);
    process.stdin.destroy();
  });
} else {
  console.error('usage: app-main.ts app NAME PORT UPSTREAMS_JSON | load URL RPS');
  process.exit(2);
}
console.log(JSON.stringify({ ready: true }));
