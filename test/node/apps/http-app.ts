// The HTTP app of test/node/protocols.test.ts, run by the node of the test
// apps' image (test/node/build.sh bundles it): every request on PORT is
// answered with JSON naming the pod that answered (its hostname), the path,
// and the caller's identity as the pod's proxy gave it (x-tsmesh-client-id,
// x-forwarded-client-cert), so a test reads who reached whom. With
// DELAY_MS in its environment it answers that much later (a slower app).
// ALSO_PORTS (comma-separated) serves the same answers on more ports;
// TCP_ECHO_PORT adds a plain TCP echo there (every byte sent back), for
// opaque TCP through the mesh; TCP_GREETING_PORT one that speaks first (a
// line naming the pod, as a database greets), then echoes.
//
// On 127.0.0.1:CONTROL_PORT, reachable only from inside the pod (kubectl
// exec), the test steers it:
//   POST /hang    from now on every request is held unanswered: the app
//                 still accepts connections and reads requests (a hung app,
//                 not a dead one)
//   GET /stats    {"requests": N, "held": M}: requests seen, and those held
//                 whose caller (the pod's proxy) has not gone away
// Usage: node http-app.mjs [PORT] [CONTROL_PORT]
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { hostname } from 'node:os';

const [port = '8080', controlPort = '8081'] = process.argv.slice(2);
const delayMs = Number(process.env['DELAY_MS'] ?? 0);
let hang = false;
let requests = 0;
let held = 0;

const handle = (req: IncomingMessage, res: ServerResponse): void => {
  requests++;
  if (hang) {
    held++;
    res.once('close', () => held--);
    return;
  }
  const header = (name: string): string | null => {
    const v = req.headers[name];
    return v === undefined ? null : String(v);
  };
  const body = JSON.stringify({ pod: hostname(), method: req.method, path: req.url, clientId: header('x-tsmesh-client-id'), clientCert: header('x-forwarded-client-cert') });
  const answer = (): void => void res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
};
const app = createServer(handle);
// Requests held by a hung app wait on their callers, not on a server timeout.
app.requestTimeout = 0;

const control = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/hang') hang = true;
  else if (req.url !== '/stats') return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requests, held, hang }));
});

const alsoPorts = (process.env['ALSO_PORTS'] ?? '').split(',').filter((p) => p !== '').map(Number);
const echoPort = process.env['TCP_ECHO_PORT'];
const listening: TcpServer[] = [app.listen(Number(port), '0.0.0.0'), control.listen(Number(controlPort), '127.0.0.1')];
for (const p of alsoPorts) listening.push(createServer(handle).listen(p, '0.0.0.0'));
const greetingPort = process.env['TCP_GREETING_PORT'];
if (echoPort) listening.push(createTcpServer((socket) => socket.on('error', () => socket.destroy()).pipe(socket)).listen(Number(echoPort), '0.0.0.0'));
if (greetingPort) listening.push(createTcpServer((socket) => socket.on('error', () => socket.destroy()).pipe(socket).write(`hello from ${hostname()}\r\n`)).listen(Number(greetingPort), '0.0.0.0'));
await Promise.all(listening.map((s) => once(s, 'listening')));
console.log(JSON.stringify({ ready: true, port: Number(port), controlPort: Number(controlPort), alsoPorts, echoPort: echoPort ? Number(echoPort) : null, greetingPort: greetingPort ? Number(greetingPort) : null }));
process.on('SIGTERM', () => process.exit(0));
