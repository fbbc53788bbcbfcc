// "Outside" servers for test/netns/egress.test.ts, run in a namespace without
// a sidecar: plain HTTP on argv[2], TLS on argv[3] (certificate and key from
// the files argv[5] and argv[6]) answering HTTP/1.1 itself, and a TCP echo on
// argv[4]. Every answer says what the server saw, as JSON; each connection
// and request is logged as a JSON line on stdout.
import { createServer as createHttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { answerOverTls } from '../../proxy/outbound/testdata/outside-tls.js'; // the loopback egress test's outside TLS answer, the same here

const [httpPort, tlsPort, echoPort, certFile, keyFile] = process.argv.slice(2);
const log = (o: object): void => console.log(JSON.stringify(o));

const http = createHttpServer((req, res) => {
  log({ event: 'http', host: req.headers.host, path: req.url });
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ server: 'plain', host: req.headers.host, path: req.url }));
});
http.listen(Number(httpPort), '0.0.0.0');

const tls = createTlsServer({ cert: readFileSync(certFile!), key: readFileSync(keyFile!) }, (socket) =>
  answerOverTls(socket, (request) => {
    log({ event: 'tls', ...request });
    return JSON.stringify({ server: 'tls', ...request });
  }),
);
tls.on('connection', () => log({ event: 'tls-connection' }));
tls.listen(Number(tlsPort), '0.0.0.0');

const echo = createNetServer((s) => {
  log({ event: 'echo-connection' });
  s.on('error', () => undefined);
  s.pipe(s);
});
echo.listen(Number(echoPort), '0.0.0.0');

Promise.all([http, tls, echo].map((s) => new Promise((r) => s.once('listening', r)))).then(() => log({ ready: true }), () => process.exit(1));
