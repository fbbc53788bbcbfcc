// "Outside" servers for test/netns/egress.test.ts, run in a namespace without
// a sidecar: plain HTTP on argv[2], TLS on argv[3] (certificate and key from
// the files argv[5] and argv[6]) answering HTTP/1.1 itself, and a TCP echo on
// argv[4]. Every answer says what the server saw, as JSON; each connection
// and request is logged as a JSON line on stdout.
import { createServer as createHttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

const [httpPort, tlsPort, echoPort, certFile, keyFile] = process.argv.slice(2);
const log = (o: object): void => console.log(JSON.stringify(o));

const http = createHttpServer((req, res) => {
  log({ event: 'http', host: req.headers.host, path: req.url });
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ server: 'plain', host: req.headers.host, path: req.url }));
});
http.listen(Number(httpPort), '0.0.0.0');

const tls = createTlsServer({ cert: readFileSync(certFile!), key: readFileSync(keyFile!) }, (socket) => {
  socket.on('error', () => undefined);
  let head = '';
  socket.on('data', (d: Buffer) => {
    head += d.toString('latin1');
    if (!head.includes('\r\n\r\n')) return;
    const path = head.split(' ')[1] ?? '';
    const host = /\r\nhost:\s*([^\r\n]*)/i.exec(head)?.[1];
    log({ event: 'tls', servername: socket.servername, path, host });
    const body = JSON.stringify({ server: 'tls', servername: socket.servername, path, host });
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    head = '';
  });
});
tls.on('connection', () => log({ event: 'tls-connection' }));
tls.listen(Number(tlsPort), '0.0.0.0');

const echo = createNetServer((s) => {
  log({ event: 'echo-connection' });
  s.on('error', () => undefined);
  s.pipe(s);
});
echo.listen(Number(echoPort), '0.0.0.0');

Promise.all([http, tls, echo].map((s) => new Promise((r) => s.once('listening', r)))).then(() => log({ ready: true }), () => process.exit(1));
