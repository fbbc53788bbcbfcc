// A flood of connections that never finish what they start, run as a
// process of its own so the proxy under test shares no event loop with it:
// keeps COUNT connections open to HOST:PORT, reopening each one the server
// closes. `idle` connections send nothing; `slow` ones trickle an HTTP head
// a byte every 500 ms (slowloris); `hello` ones a TLS ClientHello the same
// way; `mixed` is half idle, half slow.
// Usage: node --import tsx proxy/testdata/flood-client.ts HOST PORT COUNT idle|slow|hello|mixed [--from ADDRESS] [--once]
// --from: the local address to connect from (127.0.0.2 on loopback: another source);
// --once: a connection the server closes is not reopened.
// Prints "open" once COUNT connections have been made, then "closed N" (connections the server
// closed so far) every second; ends every connection and exits when stdin ends.
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { from: { type: 'string' }, once: { type: 'boolean' } } });
const [host, portText, countText, mode] = positionals;
const from = values.from;
const port = Number(portText);
const count = Number(countText);
if (!host || !(port > 0) || !(count > 0) || !['idle', 'slow', 'hello', 'mixed'].includes(mode ?? '')) {
  console.error('usage: flood-client.ts HOST PORT COUNT idle|slow|hello|mixed [--from ADDRESS] [--once]');
  process.exit(2);
}

const HEAD = Buffer.from('GET /ready HTTP/1.1\r\nhost: flood\r\nx-filler: ' + 'a'.repeat(200), 'latin1');
// A record header and the start of a ClientHello offering nothing it ever finishes.
const HELLO = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), Buffer.alloc(500, 7)]);

const open = new Set<Socket>();
const sent = new WeakMap<Socket, number>();
let closedByServer = 0;
let connects = 0;
let stopping = false;

function kindOf(i: number): 'idle' | 'slow' | 'hello' {
  if (mode === 'mixed') return i % 2 === 0 ? 'idle' : 'slow';
  return mode as 'idle' | 'slow' | 'hello';
}

function openOne(i: number, connected?: () => void): void {
  const kind = kindOf(i);
  const s = connect({ host, port, ...(from ? { localAddress: from } : {}) });
  s.on('error', () => undefined);
  s.resume();
  let settled = false;
  const settle = (): void => {
    if (settled) return;
    settled = true;
    connected?.();
  };
  s.once('connect', () => {
    settle();
    open.add(s);
    if (kind !== 'idle') sent.set(s, 0);
    if (++connects === count) console.log('open');
  });
  s.once('close', () => {
    settle();
    open.delete(s);
    if (stopping) return;
    closedByServer++;
    if (values.once) return;
    // Reopened at once, as an attacker would: the flood keeps its size.
    setImmediate(() => openOne(i));
  });
}

// At most 64 connects in flight while the flood builds: a burst of a thousand SYNs would overflow the
// listen backlog (Node's 511) and drop the prober's SYN too, which is a connect flood, not this one.
let next = 0;
const more = (): void => {
  if (next < count) openOne(next++, more);
};
for (let k = 0; k < 64; k++) more();

const trickle = setInterval(() => {
  for (const s of open) {
    const n = sent.get(s);
    if (n === undefined || s.destroyed) continue;
    const bytes = (mode === 'hello' ? HELLO : HEAD).subarray(n, n + 1);
    if (bytes.length === 0) continue; // never finishes: it has run out of bytes to trickle
    s.write(bytes);
    sent.set(s, n + 1);
  }
}, 500);
const report = setInterval(() => console.log(`closed ${closedByServer}`), 1000);

process.stdin.resume();
process.stdin.on('end', () => {
  stopping = true;
  clearInterval(trickle);
  clearInterval(report);
  for (const s of open) s.destroy();
  process.exit(0);
});
