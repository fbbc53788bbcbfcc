// A second app for pod "b" in test/netns/upgrade.test.ts, beside mesh-app.ts:
//   WS_PORT   the `ws` package's server on a node:http server: echoes each
//             message as it came (text or binary); the text "close-me" is
//             answered by a close with code 4002, "flood" by 1 MiB; plain
//             requests get "plain".
//   RAW_PORT  node:net, writing what node:http would not, by path:
//     /hints        103 Early Hints (a Link), then 200 "page"
//     /continue     100 Continue when the request expects it, then reads the
//                   body and answers "got N"
//     /unasked-101  a 101 to a request that asked for no upgrade, then a
//                   forged 200 that must never be read as the response
// Each connection, message count and close is logged to stdout as a JSON line
// (the test reads what reached the app). Prints {"ready":true} once both
// ports listen.
// Usage: node --import tsx test/netns/ws-app.ts WS_PORT RAW_PORT
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { WebSocketServer } from 'ws';

const [wsPort = '8090', rawPort = '8092'] = process.argv.slice(2);

function log(entry: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ at: Date.now(), ...entry }) + '\n');
}

const http = createHttpServer((req, res) => {
  log({ event: 'http', path: req.url });
  res.end('plain');
});
// Compression offered, so that the extension's negotiation crosses the proxies too.
const wss = new WebSocketServer({ server: http, perMessageDeflate: true });
wss.on('connection', (ws, req) => {
  const path = req.url;
  let messages = 0;
  log({ event: 'ws-open', path, peer: req.socket.remoteAddress });
  ws.on('message', (m: Buffer, binary) => {
    messages++;
    if (!binary && m.toString() === 'close-me') ws.close(4002, 'server says bye');
    else if (!binary && m.toString() === 'flood') ws.send(Buffer.alloc(1 << 20, 1));
    else ws.send(m, { binary });
  });
  ws.on('close', (code, reason) => log({ event: 'ws-close', path, code, reason: reason.toString(), messages }));
});

/** Reads a request head (and what came after it) from a raw connection. */
function readHead(s: Socket): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onData);
      resolve({ head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) });
    };
    s.on('data', onData);
  });
}

const raw = createTcpServer((s) => {
  s.on('error', () => s.destroy());
  void readHead(s).then(({ head, rest }) => {
    const path = head.split(' ')[1] ?? '';
    const expect = /\r\nexpect: *100-continue/i.test(head);
    log({ event: 'raw', path, expect, bodyBeforeContinue: rest.length });
    if (path.startsWith('/hints')) {
      s.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n');
      setTimeout(() => s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\npage'), 200);
    } else if (path.startsWith('/continue')) {
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (expect) s.write('HTTP/1.1 100 Continue\r\n\r\n');
      let got = rest.length;
      const done = (): void => void s.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${String(got).length + 4}\r\nconnection: close\r\n\r\ngot ${got}`);
      if (got >= length) done();
      else
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= length) done();
        });
    } else if (path.startsWith('/unasked-101')) {
      s.end('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-surprise\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nforged');
    } else s.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  });
});

http.listen(Number(wsPort), '0.0.0.0');
raw.listen(Number(rawPort), '0.0.0.0');
await Promise.all([once(http, 'listening'), once(raw, 'listening')]);
log({ ready: true });
process.on('SIGTERM', () => process.exit(0));
