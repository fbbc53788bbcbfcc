// Socket options of this process's own TCP connections, found by the port
// they are connected to: /proc/net/tcp{,6} tells which socket inode is which
// connection, /proc/self/fd which descriptor holds that inode, and libc's
// getsockopt reads the option. Tests use it to see how the proxy set up a
// connection it made, which no Node API reports.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { libcGetsockopt } from '../orig-dst.js';

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const ESTABLISHED = '01';

/** Inodes of this network namespace's established TCP connections whose remote port is `port`. */
function inodesConnectedTo(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== ESTABLISHED) continue;
      if (Number.parseInt(f[2]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** Descriptors of the sockets this process holds connected to `port` (on any address). */
export function socketsConnectedTo(port: number): number[] {
  const inodes = inodesConnectedTo(port);
  const fds: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed since the directory was read
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && inodes.has(inode)) fds.push(Number(fd));
  }
  return fds;
}

/** TCP_NODELAY of each socket this process holds connected to `port`. */
export function noDelayOfConnectionsTo(port: number): boolean[] {
  const getsockopt = libcGetsockopt();
  return socketsConnectedTo(port).map((fd) => {
    const value = Buffer.alloc(4);
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, value, [4]) !== 0) throw new Error(`getsockopt(TCP_NODELAY) failed on fd ${fd}`);
    return value.readInt32LE(0) !== 0;
  });
}
