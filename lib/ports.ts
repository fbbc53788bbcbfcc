// A port for a server that must be named before it listens (a mesh file, a
// command line). A port the kernel hands out for listen(0) comes from the
// ephemeral range, the same range every outgoing connection takes its source
// port from, so between choosing it and listening on it any connect() may
// take it (EADDRINUSE). A port below that range is taken only by someone who
// asks for it by number.
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

const LOWEST = 10_000;

/** The low end of the kernel's ephemeral port range (32768 when it cannot be read). */
export function ephemeralPortStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOWEST + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function tryListen(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen({ port, host, exclusive: true }, () => {
      const chosen = (s.address() as AddressInfo).port;
      s.close(() => resolve(chosen));
    });
  });
}

/**
 * A port that is free on `host` now and lies outside the ephemeral range, so
 * that no outgoing connection takes it before its server listens.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const high = ephemeralPortStart();
  for (let i = 0; i < 64; i++) {
    const port = LOWEST + Math.floor(Math.random() * (high - LOWEST));
    const got = await tryListen(port, host);
    if (got !== undefined) return got;
  }
  const any = await tryListen(0, host);
  if (any === undefined) throw new Error(`no free port on ${host}`);
  return any;
}
