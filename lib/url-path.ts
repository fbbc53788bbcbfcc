// The path of an HTTP request target as a server that decodes it would route
// it, for rules that match paths (authorization): one spelling per path, so
// "/public/../admin", "//admin", "/%61dmin" and "/admin%2F" cannot slip past
// a rule about "/admin".
//
// - the query and fragment are dropped, and an absolute-form target's scheme
//   and authority ("http://host/p" -> "/p");
// - percent-encoded unreserved characters are decoded ("%61" -> "a", "%2e"
//   -> "."), %2F, %5C and "\" become "/" (servers that decode them route by
//   the slash), other escapes are kept with upper-case hex; one pass only,
//   so "%252F" stays "%252F";
// - "." and ".." segments are removed (RFC 3986 5.2.4) and repeated slashes
//   merged, as Envoy's path normalization with merge_slashes does.
// The result begins with "/" (an asterisk-form "*" stays "*").

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Whether `path` may need work: anything but plain segments of plain characters. */
const NEEDS_WORK = /[%\\]|\/\/|\/\.(?:\/|\.?(?:\/|$))|^(?!\/)/;

export function normalizePath(target: string): string {
  let s = target;
  const query = s.indexOf('?');
  if (query >= 0) s = s.slice(0, query);
  const fragment = s.indexOf('#');
  if (fragment >= 0) s = s.slice(0, fragment);
  if (!NEEDS_WORK.test(s)) return s;
  if (s === '*') return s;
  if (!s.startsWith('/')) {
    const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(s);
    if (absolute) s = s.slice(absolute[0].length);
    if (!s.startsWith('/')) s = `/${s}`;
  }
  s = s.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    if (c === '/' || c === '\\') return '/';
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
  s = s.replace(/\\/g, '/');
  const out: string[] = [];
  const segments = s.split('/');
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const last = segments.at(-1);
  const trailing = out.length > 0 && (last === '' || last === '.' || last === '..');
  return `/${out.join('/')}${trailing ? '/' : ''}`;
}

/**
 * Whether normalized `path` begins with `prefix` on a segment boundary, as
 * Gateway API's PathPrefix: "/api" matches "/api", "/api/" and "/api/v1",
 * not "/apis". `prefix` is normalized without a trailing slash ("" for "/",
 * which matches every path).
 */
export function hasPathPrefix(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 0x2f;
}

/** A path prefix as hasPathPrefix takes it: "/" -> "", "/api/" -> "/api". */
export function prefixOf(normalized: string): string {
  return normalized.replace(/\/+$/, '');
}
