// Where a redirected connection was going before iptables sent it to the
// proxy: getsockopt(SO_ORIGINAL_DST) for IPv4, getsockopt(IP6T_SO_ORIGINAL_DST)
// for IPv6. Node does not expose either, so libc's getsockopt is called
// (lib/libc.ts).
import type { Socket } from 'node:net';
import { lastErrno, libcFunction } from '../lib/libc.js';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

export class OriginalDestinationError extends Error {
  override name = 'OriginalDestinationError';
  constructor(
    message: string,
    /** The errno of getsockopt, when it failed (ENOENT: the connection was not redirected). */
    readonly errno?: number,
  ) {
    super(message);
  }
}

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) are both 80. */
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;
const ENOENT = 2;
/** sizeof(struct sockaddr_in6), the larger of the two answers. */
const SOCKADDR_SIZE = 28;

export type GetSockOpt = (fd: number, level: number, optname: number, optval: Buffer, optlen: number[]) => number;

let getsockopt: GetSockOpt | undefined;

/** libc's getsockopt, declared once (tests read other options of the proxy's sockets with it). */
export function libcGetsockopt(): GetSockOpt {
  getsockopt ??= libcFunction('int getsockopt(int fd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)') as GetSockOpt;
  return getsockopt;
}

/** Decodes a struct sockaddr_in or sockaddr_in6 (Linux layout). */
export function parseSockaddr(buf: Buffer): OriginalDestination {
  const family = buf.readUInt16LE(0);
  const port = buf.readUInt16BE(2);
  if (family === AF_INET) return { address: [...buf.subarray(4, 8)].join('.'), port, family: 'IPv4' };
  if (family === AF_INET6) {
    const groups: string[] = [];
    for (let i = 8; i < 24; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
    return { address: compressIPv6(groups), port, family: 'IPv6' };
  }
  throw new OriginalDestinationError(`unexpected address family ${family} in the original destination`);
}

function compressIPv6(groups: readonly string[]): string {
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = { start: -1, len: 0 };
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best.len && j - i >= 2) best = { start: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.start < 0) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.len).join(':')}`;
}

function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new OriginalDestinationError('the socket has no file descriptor (closed, or not a TCP socket)');
  return fd;
}

/**
 * The destination the client dialled before iptables redirected the
 * connection. Throws OriginalDestinationError (errno ENOENT) for a connection
 * that was not redirected and has no conntrack entry.
 */
export function originalDestination(socket: Socket): OriginalDestination {
  const fd = socketFd(socket);
  // An IPv4 client reaching a dual-stack listener shows as ::ffff:a.b.c.d, but
  // its conntrack entry, and so its answer, is IPv4.
  const ipv4 = socket.localFamily === 'IPv4' || (socket.localAddress ?? '').toLowerCase().startsWith('::ffff:');
  const buf = Buffer.alloc(SOCKADDR_SIZE);
  const len = [buf.length];
  const rc = libcGetsockopt()(fd, ipv4 ? SOL_IP : SOL_IPV6, SO_ORIGINAL_DST, buf, len);
  if (rc !== 0) {
    const errno = lastErrno();
    const why = errno === ENOENT ? 'the connection was not redirected (no NAT entry)' : `errno ${errno}`;
    throw new OriginalDestinationError(`getsockopt(${ipv4 ? 'SO_ORIGINAL_DST' : 'IP6T_SO_ORIGINAL_DST'}) failed: ${why}`, errno);
  }
  return parseSockaddr(buf);
}
