// Port lists as operators write them ("25,3306,8000-8100") and as iptables'
// multiport match takes them ("25,3306,8000:8100", at most 15 ports a rule).

export interface PortRange {
  readonly first: number;
  readonly last: number;
}

export const PORT_LIST_HINT = 'expected comma-separated ports or ranges like 25,3306,8000-8100';

const PORT = /^\d{1,5}$/;

/** Parses one port (1-65535); undefined when the text is not one. */
export function parsePort(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/**
 * Parses "25,3306,8000-8100" (":" also separates a range, as iptables writes
 * it). Spaces around items are ignored; an empty string is an empty list.
 * Throws with the offending item so the caller can name the flag.
 */
export function parsePortList(text: string): PortRange[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  return trimmed.split(',').map((raw) => {
    const item = raw.trim();
    const [a, b, ...extra] = item.split(/[-:]/);
    const first = parsePort(a ?? '');
    const last = b === undefined ? first : parsePort(b);
    if (first === undefined || last === undefined || extra.length > 0) {
      throw new RangeError(`${JSON.stringify(item)} is not a port`);
    }
    if (first > last) throw new RangeError(`${JSON.stringify(item)} is not a port range: ${first} is above ${last}`);
    return { first, last };
  });
}

/** Ranges in first-seen order without exact duplicates. */
export function uniquePorts(ranges: readonly PortRange[]): PortRange[] {
  const seen = new Set<string>();
  return ranges.filter((r) => {
    const key = `${r.first}:${r.last}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function portRangeText(r: PortRange): string {
  return r.first === r.last ? String(r.first) : `${r.first}:${r.last}`;
}

export function containsPort(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some((r) => r.first <= port && port <= r.last);
}

// The multiport match counts a range as two ports and takes at most 15.
const MULTIPORT_LIMIT = 15;

/** Splits ranges into "--dports" arguments that each fit one multiport match. */
export function multiportChunks(ranges: readonly PortRange[]): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let used = 0;
  for (const r of ranges) {
    const cost = r.first === r.last ? 1 : 2;
    if (used + cost > MULTIPORT_LIMIT) {
      chunks.push(current.join(','));
      current = [];
      used = 0;
    }
    current.push(portRangeText(r));
    used += cost;
  }
  if (current.length > 0) chunks.push(current.join(','));
  return chunks;
}
