// Holds idle TCP connections open for the soak's flood phases, run inside a
// pod's namespace: a client that connects and then says nothing, as a
// leaked pool or a port scanner does.
//   node --import tsx test/soak/flood.ts HOST PORT COUNT
// Prints {"open":N,"failed":M} once every connection is made (or failed),
// then holds them until a line "close" on stdin (or its end), and prints
// {"closedByPeer":K} before it exits: K is how many the other end closed
// while they were held.
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

/** Connections opened at once: enough to be quick, few enough that the backlog does not drop SYNs. */
const AT_ONCE = 64;
const CONNECT_TIMEOUT_MS = 10_000;

const [host = '', port = '0', count = '0'] = process.argv.slice(2);
const sockets: Socket[] = [];
let failed = 0;
let closedByPeer = 0;
let closing = false;

function open(): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host, port: Number(port) });
    const timer = setTimeout(() => s.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
    s.on('error', () => undefined);
    s.once('connect', () => {
      clearTimeout(timer);
      sockets.push(s);
      s.once('close', () => {
        if (!closing) closedByPeer++;
      });
      resolve();
    });
    s.once('close', () => {
      clearTimeout(timer);
      if (!sockets.includes(s)) failed++;
      resolve();
    });
  });
}

let next = 0;
await Promise.all(
  Array.from({ length: AT_ONCE }, async () => {
    while (next < Number(count)) {
      next++;
      await open();
    }
  }),
);
console.log(JSON.stringify({ open: sockets.length - closedByPeer, failed }));

const done = (): void => {
  if (closing) return;
  closing = true;
  for (const s of sockets) s.destroy();
  console.log(JSON.stringify({ closedByPeer }));
  process.exit(0);
};
createInterface({ input: process.stdin })
  .on('line', (l) => {
    if (l.trim() === 'close') done();
  })
  .on('close', done);
process.on('SIGTERM', done);
