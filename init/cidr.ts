// Address ranges for the outbound include/skip lists, normalised to the form
// iptables-save prints ("10.244.2.0/24", "fd00:10:244::/64"), so a planned rule
// reads exactly like the installed one.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 'ipv4' | 'ipv6';

export interface Cidr {
  readonly family: Family;
  /** Network address with host bits cleared, in canonical text form. */
  readonly address: string;
  readonly prefix: number;
}

export const CIDR_LIST_HINT = 'expected comma-separated addresses or ranges like 10.0.0.0/8,fd00::/8';

export function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** Parses "10.0.0.0/8", "fd00::/8", or a single address (a /32 or /128). */
export function parseCidr(text: string): Cidr {
  const item = text.trim();
  const slash = item.indexOf('/');
  const addr = slash < 0 ? item : item.slice(0, slash);
  const family: Family | undefined = isIPv4(addr) ? 'ipv4' : isIPv6(addr) && !addr.includes('%') ? 'ipv6' : undefined;
  if (family === undefined) throw new RangeError(`${JSON.stringify(item)} is not an address or CIDR`);
  const bits = family === 'ipv4' ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = item.slice(slash + 1);
    prefix = /^\d{1,3}$/.test(p) ? Number(p) : NaN;
    if (!(prefix >= 0 && prefix <= bits)) throw new RangeError(`${JSON.stringify(item)} has a bad prefix length; use 0-${bits}`);
  }
  const bytes = family === 'ipv4' ? ipv4Bytes(addr) : ipv6Bytes(addr);
  mask(bytes, prefix);
  return { family, address: family === 'ipv4' ? bytes.join('.') : formatIPv6(bytes), prefix };
}

/** Parses a comma-separated list; an empty string is an empty list. */
export function parseCidrList(text: string): Cidr[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const seen = new Set<string>();
  return trimmed
    .split(',')
    .map(parseCidr)
    .filter((c) => {
      const key = cidrText(c);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

function ipv6Bytes(addr: string): number[] {
  let text = addr.toLowerCase();
  // An embedded IPv4 tail ("::ffff:10.0.0.1") becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const [a, b, c, d] = ipv4Bytes(v4[1]) as [number, number, number, number];
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function mask(bytes: number[], prefix: number): void {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.min(8, Math.max(0, prefix - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
}

/** RFC 5952 text, as inet_ntop writes it: the longest run of two or more zero groups becomes "::". */
function formatIPv6(bytes: readonly number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // inet_ntop keeps the dotted tail of IPv4-compatible and IPv4-mapped addresses.
  if (bestStart === 0 && (bestLen === 6 || (bestLen === 5 && groups[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${bytes.slice(12).join('.')}`;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
