// A stand-in for the cluster network of a test kube-apiserver, so that what
// the API server sends "into the cluster" (calls to a webhook's Service, the
// service and pod proxy subresources) reaches servers the test runs on
// loopback.
//
// kube-apiserver sends cluster traffic through its egress selector
// (--egress-selector-config-file, selection "cluster"), here an HTTP CONNECT
// proxy on a Unix socket. The proxy connects a CONNECT to <ip>:<port> to the
// loopback port the test routed that address to, and refuses every other
// address: no packet goes to a pod or Service address, which exist only in
// the API server's objects. Traffic to the control plane (webhooks given by
// URL, etcd) is not touched.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ClusterNetwork {
  /** kube-apiserver flags that send cluster traffic here (StartOptions.extraArgs). */
  apiServerArgs: string[];
  /** Sends connections to `address` (ip:port as the API server dials it) to 127.0.0.1:port. */
  route(address: string, loopbackPort: number): void;
  unroute(address: string): void;
  /** Every CONNECT seen: the address and whether it was routed. */
  readonly seen: { address: string; routed: boolean }[];
  close(): Promise<void>;
}

const MAX_HEAD = 8192;

export async function startClusterNetwork(): Promise<ClusterNetwork> {
  // A short path: Unix socket paths are limited to about 100 bytes.
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-net-'));
  const socketPath = join(dir, 'egress.sock');
  const configPath = join(dir, 'egress-selector.yaml');
  writeFileSync(
    configPath,
    [
      'apiVersion: apiserver.k8s.io/v1beta1',
      'kind: EgressSelectorConfiguration',
      'egressSelections:',
      '  - name: cluster',
      '    connection:',
      '      proxyProtocol: HTTPConnect',
      '      transport:',
      '        uds:',
      `          udsName: ${socketPath}`,
      '',
    ].join('\n'),
  );
  const routes = new Map<string, number>();
  const seen: { address: string; routed: boolean }[] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD) client.destroy();
        return;
      }
      client.off('data', onData);
      client.pause();
      const m = /^CONNECT (\S+) HTTP\/1\.[01]\r\n/.exec(head.subarray(0, end + 2).toString('latin1'));
      const address = m?.[1] ?? '';
      const port = routes.get(address);
      seen.push({ address, routed: port !== undefined });
      if (port === undefined) {
        client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      const upstream = connect(port, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => {
        upstream.destroy();
        client.destroy();
      });
      client.on('close', () => upstream.destroy());
      upstream.once('connect', () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    client.on('data', onData);
  });
  server.listen(socketPath);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });

  return {
    apiServerArgs: [`--egress-selector-config-file=${configPath}`],
    route: (address, loopbackPort) => void routes.set(address, loopbackPort),
    unroute: (address) => void routes.delete(address),
    seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
