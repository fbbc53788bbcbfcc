// The API server's relay between the host and the test node's network
// namespace (test/node/node.sh): a Unix socket in the node's state folder is
// reachable from both namespaces, a TCP port is not.
//
//   node relay.mjs unix-to-tcp SOCKET HOST:PORT    inside the node: the socket -> the API server
//   node relay.mjs tcp-to-unix HOST:PORT SOCKET PORTFILE
//                                                  on the host: HOST:PORT (0: any) -> the socket;
//                                                  the port taken is written to PORTFILE
// Bytes are copied both ways as they are (TLS end to end, upgrades for exec
// and port-forward included). A side that ends or closes ends the other once
// what the relay still holds for it is written (an answer followed by the
// server's close reaches the client whole); an error on one side destroys both.
import { createConnection, createServer } from 'node:net';
import { renameSync, rmSync, writeFileSync } from 'node:fs';

const [mode, from, to, portFile] = process.argv.slice(2);
const hostPort = (s) => {
  const i = s.lastIndexOf(':');
  if (i < 0) throw new Error(`relay: want HOST:PORT, got ${s}`);
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

function pipe(client, connect) {
  const upstream = connect();
  upstream.setNoDelay?.(true);
  client.setNoDelay?.(true);
  client.pipe(upstream).pipe(client);
  const destroy = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', destroy).on('close', () => upstream.end());
  upstream.on('error', destroy).on('close', () => client.end());
}

if (mode === 'unix-to-tcp') {
  const target = hostPort(to);
  rmSync(from, { force: true });
  createServer((c) => pipe(c, () => createConnection(target))).listen(from);
} else if (mode === 'tcp-to-unix') {
  const { host, port } = hostPort(from);
  const server = createServer((c) => pipe(c, () => createConnection(to)));
  server.listen(port, host, () => {
    writeFileSync(`${portFile}.tmp`, String(server.address().port));
    renameSync(`${portFile}.tmp`, portFile);
  });
} else {
  console.error('usage: relay.mjs unix-to-tcp SOCKET HOST:PORT | tcp-to-unix HOST:PORT SOCKET PORTFILE');
  process.exit(2);
}
