// A caller that opens many connections at once, each sending a POST with a
// large body to an app that does not read it (test/netns/overload.test.ts:
// the per-proxy memory bound). Run as the app's uid in the client pod, so its
// connections take the redirect to the pod's proxy.
// Usage: node --import tsx test/netns/body-flood.ts HOST PORT CONNECTIONS BODY_BYTES HOLD_MS
// Prints {"opened":N} once every connection is open, and {"done":...} after HOLD_MS, when it closes them all.
import { connect, type Socket } from 'node:net';

const [host = '', port = '80', count = '100', bodyBytes = '1048576', holdMs = '5000'] = process.argv.slice(2);
const body = Buffer.alloc(Number(bodyBytes), 0x61);
const sockets: Socket[] = [];
let answered = 0;
await Promise.all(
  Array.from(
    { length: Number(count) },
    (_, i) =>
      new Promise<void>((resolve) => {
        const s = connect({ host, port: Number(port) }, () => {
          s.write(`POST /flood/${i} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.length}\r\n\r\n`);
          s.write(body);
          resolve();
        });
        s.once('data', () => answered++);
        s.on('error', () => resolve());
        sockets.push(s);
      }),
  ),
);
console.log(JSON.stringify({ opened: sockets.length }));
await new Promise((r) => setTimeout(r, Number(holdMs)));
for (const s of sockets) s.destroy();
console.log(JSON.stringify({ done: true, answered }));
