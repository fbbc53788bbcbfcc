import { createServer, type AddressInfo } from 'node:net';

/** A loopback port that was free a moment ago: for a server a test starts later. */
export async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
