// Gateway API's HTTPRoute filters as layers, each compiled once per route
// (outbound/stack.ts composes them): header modifiers on the request and on
// the response head, a redirect the proxy answers itself, and a rewrite of
// the Host and path the backend sees. Mirrors are in mirror.ts.
//
// Paths follow HTTPPathModifier: replaceFullPath replaces the path,
// replacePrefixMatch the whole path segments the route's pathPrefix matched
// ("/foo/bar" matched by "/foo", replaced by "/xyz", is "/xyz/bar"; by "" or
// "/", "/bar"; "/foo" itself becomes "/xyz", or "/"), a trailing "/" of
// either ignored. The query is kept as the request gave it.
import type { HeaderModifier, PathModifier, RedirectFilter, RewriteFilter } from '../../contract/proxy-config.js';
import { pathEnd } from './route.js';
import { bufferedBody, emptyHeaders, type Handler, type Layer, type ProxyRequest } from './types.js';

type Fields = Record<string, string | string[] | undefined>;

/** A header modifier as one function over a copy of the fields: set replaces, add appends (to one line, comma-joined), remove deletes. */
export function compileHeaderModifier(m: HeaderModifier): <T extends Fields>(headers: T) => T {
  const set = Object.entries(m.set ?? {});
  const add = Object.entries(m.add ?? {});
  const remove = new Set(m.remove);
  return <T extends Fields>(headers: T): T => {
    const out = emptyHeaders<Fields>();
    for (const k in headers) if (!remove.has(k)) out[k] = headers[k];
    for (const [name, value] of set) out[name] = value;
    for (const [name, value] of add) {
      const got = out[name];
      // Set-Cookie is the one field that never joins (RFC 9110 5.3): a line of its own.
      out[name] = got === undefined ? value : Array.isArray(got) ? [...got, value] : `${got},${value}`;
    }
    return out as T;
  };
}

/** Changes the request's header fields before it goes on. */
export function requestHeadersLayer(m: HeaderModifier): Layer {
  const modify = compileHeaderModifier(m);
  return (next) => (req) => next({ ...req, headers: modify(req.headers) });
}

/** Changes the response head's fields (HTTP/1.1 and HTTP/2 alike, a gRPC answer's head too; trailers are left alone). */
export function responseHeadersLayer(m: HeaderModifier): Layer {
  const modify = compileHeaderModifier(m);
  return (next) => (req) => next(req).then((res) => ({ ...res, headers: modify(res.headers) }));
}

/** `path` (without its query) after the modifier; `matchedPrefix` is the route's pathPrefix. */
export function modifyPath(modifier: PathModifier, path: string, matchedPrefix: string): string {
  if (modifier.replaceFullPath !== undefined) return modifier.replaceFullPath;
  const prefix = matchedPrefix.replace(/\/+$/, '');
  // The match was on whole segments: what follows the prefix is "" or begins with "/".
  const rest = path.startsWith(prefix) ? path.slice(prefix.length) : path;
  const out = (modifier.replacePrefixMatch ?? '').replace(/\/+$/, '') + rest;
  return out.startsWith('/') ? out : `/${out}`;
}

/** The request target with its path modified and its query kept. */
function modifyTarget(modifier: PathModifier | undefined, target: string, matchedPrefix: string): string {
  if (!modifier) return target;
  const end = pathEnd(target);
  return modifyPath(modifier, target.slice(0, end), matchedPrefix) + target.slice(end);
}

/** Rewrites the Host (HTTP/2's :authority) and the path the backend sees. */
export function rewriteLayer(r: RewriteFilter, matchedPrefix: string): Layer {
  const { hostname, path } = r;
  return (next) => (req) => {
    const out: ProxyRequest = { ...req };
    if (hostname !== undefined) out.headers = { ...req.headers, host: hostname };
    if (path) out.path = modifyTarget(path, req.path, matchedPrefix);
    return next(out);
  };
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 };

/** The host name of a Host field ("echo:8080" -> "echo", "[fd00::1]:80" -> "[fd00::1]"). */
export function hostName(host: string): string {
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    return close < 0 ? host : host.slice(0, close + 1);
  }
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

export interface RedirectContext {
  /** The route's pathPrefix, for replacePrefixMatch. */
  matchedPrefix: string;
  /** The service port the request came to: Gateway API's listener port, the redirect's when it sets no scheme and no port. */
  listenerPort: number;
  /** The scheme the caller used (plain HTTP from the app: http). */
  scheme: 'http' | 'https';
  /** The host when the request has no Host field (an HTTP/1.0 request): the service's name. */
  fallbackHost: string;
}

/**
 * The Location of a redirect, per HTTPRequestRedirectFilter: each unset
 * field keeps the request's own; the port is the filter's, else the new
 * scheme's well-known port when the filter changes the scheme, else the
 * listener's, and is left out when it is its scheme's well-known one.
 */
export function redirectLocation(f: RedirectFilter, req: ProxyRequest, c: RedirectContext): string {
  const scheme = f.scheme ?? c.scheme;
  const hostField = req.headers.host;
  const host = f.hostname ?? (hostField ? hostName(hostField) : c.fallbackHost);
  const port = f.port ?? (f.scheme !== undefined ? DEFAULT_PORTS[scheme]! : c.listenerPort);
  const authority = port === DEFAULT_PORTS[scheme] ? host : `${host}:${port}`;
  return `${scheme}://${authority}${modifyTarget(f.path, req.path, c.matchedPrefix)}`;
}

/** Answers every request with the redirect; nothing is sent on. The request's body, unread, is let go. */
export function redirectHandler(f: RedirectFilter, c: RedirectContext): Handler {
  const status = f.statusCode ?? 302;
  return (req) => {
    const location = redirectLocation(f, req, c);
    return Promise.resolve({ status, headers: { location, 'content-length': '0' }, body: bufferedBody(Buffer.alloc(0)) });
  };
}
