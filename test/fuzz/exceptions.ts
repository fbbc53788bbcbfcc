// What the differential fuzzer does not hold tsmesh to, each with its
// reason: a reference's verdict that does not bind tsmesh on some inputs
// (EXCEPTIONS), and findings the proxy's parser work in progress is known to
// fix (PENDING_FIXES: reported as pending, never as passed). Both match
// inputs by their bytes, so generated cases are covered as the corpus is.
import type { FuzzCase } from './corpus.js';
import type { Finding } from './verdict.js';
import { readRequests } from './wire.js';

/** A reference proxy whose refusal does not bind tsmesh on the cases `matches` picks. */
export interface Exception {
  readonly reference: 'haproxy' | 'nginx';
  readonly matches: (c: FuzzCase) => boolean;
  /** One line: why tsmesh may forward what that reference refuses. */
  readonly reason: string;
}

/** Findings a change under way is known to fix; the test reports them as pending with this reason. */
export interface PendingFix {
  readonly matches: (c: FuzzCase) => boolean;
  readonly kinds: readonly Finding['kind'][];
  /** Only on these of tsmesh's paths (job.ts); on every one when absent. */
  readonly paths?: readonly string[];
  /** Which part of the proxy fixes it, and what. */
  readonly reason: string;
}

/**
 * The heads a reader takes from the bytes (wire.ts): each request's, then
 * the start of what follows them (a head unfinished or unreadable). Bodies
 * are not heads: a word in a body must not pass for a method.
 */
function heads(bytes: string): string[] {
  const { requests, rest } = readRequests(bytes);
  const tail = rest.replace(/^[\r\n]+/, '');
  return [...requests.map((r) => r.head), ...(tail === '' ? [] : [tail.split('\r\n\r\n')[0]!])];
}
const requestLines = (bytes: string): string[] => heads(bytes).map((h) => h.split(/\r?\n/)[0]!);
/** The first word of each head: a request line's method, or what stands where one would. */
const firstWords = (bytes: string): string[] => requestLines(bytes).map((l) => l.split(' ')[0]!);
/** The field lines of the first head. */
const fieldLines = (bytes: string): string[] => (heads(bytes)[0] ?? '').split(/\r?\n/).slice(1);
const valuesOf = (bytes: string, name: string): string[] =>
  fieldLines(bytes)
    .filter((l) => l.toLowerCase().startsWith(`${name}:`))
    .map((l) => l.slice(name.length + 1));

export const EXCEPTIONS: readonly Exception[] = [
  {
    reference: 'nginx',
    matches: (c) => firstWords(c.bytes).some((w) => /[a-z]/.test(w)),
    reason: 'a method is a case-sensitive token (RFC 9110 9.1): "get" is a valid method the app may not know; nginx takes only upper-case letters, HAProxy forwards it',
  },
  {
    reference: 'nginx',
    matches: (c) => ['content-length', 'transfer-encoding', 'host'].flatMap((name) => valuesOf(c.bytes, name)).some((v) => /^[ \t]*\t|\t[ \t]*$/.test(v)),
    reason: 'a tab around a field value is optional whitespace (RFC 9110 5.5): Content-Length:\\t5 is 5, Transfer-Encoding:\\tchunked is chunked, Host: a\\t is a; nginx refuses the tab in these three (400, 501), HAProxy takes it',
  },
  {
    reference: 'nginx',
    matches: (c) => {
      const values = valuesOf(c.bytes, 'content-length').map((v) => v.trim());
      return values.length > 1 && new Set(values).size === 1;
    },
    reason: 'Content-Length lines that repeat one value leave no doubt about the length (RFC 9112 6.3 lets a recipient take them as one, as HAProxy does); nginx refuses any second line',
  },
  {
    reference: 'nginx',
    matches: (c) => valuesOf(c.bytes, 'host').some((v) => v.trim() === ''),
    reason: 'an empty Host is a valid value (reg-name may be empty; RFC 9112 3.2 has a client send one when the target has no authority) and HAProxy forwards it; nginx refuses it',
  },
  {
    reference: 'haproxy',
    matches: (c) => {
      const authority = /^\S+ https?:\/\/([^/?# ]*)/i.exec(requestLines(c.bytes)[0] ?? '')?.[1];
      const hosts = valuesOf(c.bytes, 'host').map((v) => v.trim());
      return authority !== undefined && hosts.length === 1 && hosts[0] !== authority;
    },
    reason: 'for an absolute-form target tsmesh does what RFC 9112 3.2.2 has a server do: the target\'s authority becomes the Host the app sees, with the target in origin-form, so one Host remains; HAProxy refuses a Host that differs instead',
  },
  {
    reference: 'nginx',
    matches: (c) => requestLines(c.bytes).some((l) => l.length > 8000),
    reason: 'a size limit, not a reading: nginx refuses request lines over its 8 KiB header buffers (414); tsmesh takes heads up to 64 KiB',
  },
  {
    reference: 'haproxy',
    matches: (c) => fieldLines(c.bytes).length > 100,
    reason: 'a size limit, not a reading: HAProxy refuses more than 101 fields (tune.http.maxhdr); tsmesh bounds the head by bytes (64 KiB)',
  },
];

export const PENDING_FIXES: readonly PendingFix[] = [];

/** The pending fix that covers a finding, if any. */
export const pendingFixOf = (f: Finding): PendingFix | undefined => PENDING_FIXES.find((p) => p.kinds.includes(f.kind) && (p.paths === undefined || p.paths.includes(f.path)) && p.matches(f.case));
