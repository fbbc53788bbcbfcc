// Egress: outbound connections to destinations outside the mesh (no Service
// of the config, no meshed pod). The config's egress settings (mesh.egress,
// then the workload's: its mode replaces the mesh's, its allow-list entries
// are added) decide, per connection:
//  - TLS: the ClientHello is read whole and its SNI matched; refused in
//    registry-only mode by closing the connection before any byte leaves;
//  - plain HTTP/1.1: each request goes through the proxy's HTTP server and
//    is matched by its Host (403 `egress-denied` when refused; the proxy's
//    own TLS to the destination for an entry with originateTls);
//  - anything else (HTTP/2 prior knowledge, server-first and other
//    protocols): matched by the address and port alone.
// In allow-all mode without an entry that originates TLS there is nothing
// to refuse or rewrite: the connection is spliced at once, as before egress
// control, and named by its first bytes (SNI, Host) as they pass.
// The address the app dialled stays the destination: a name allows a
// connection to that address, it is never resolved anew. A CIDR entry
// matching the address and port decides at once, before any sniffing.
// Cluster DNS over TCP (port 53) and addresses of the config's Services'
// endpoints (pods without a sidecar) are in the registry: never refused.
// tsmesh_egress_connections_total counts each decision by the entry's name,
// else the SNI or Host seen, else the address, at most MAX_DESTINATIONS
// names per proxy and `other` beyond.
import { BlockList, isIPv6, type OnReadOpts, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { EgressRule, ProxyConfig } from '../../contract/proxy-config.js';
import type { EgressDecision, EgressMode, LocalError } from '../../contract/vocabulary.js';
import { family } from '../../contract/metrics.js';
import { Counter } from '../../lib/prom.js';
import type { Logger } from '../../lib/log.js';
import { isConnectFailure } from '../http/balance.js';
import { EndpointPools, forward } from '../http/forward.js';
import { H1Pool } from '../http/h1/pool.js';
import { OverloadedError } from '../http/limits.js';
import { localResponse, type Handler, type ProxyResponse } from '../http/types.js';
import type { ProxyMetrics } from '../metrics.js';
import { classify } from '../net/sniff.js';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello } from '../tls/client-hello.js';
import { CONNECT_TIMEOUT_MS, failure, UpstreamConnectError, whenOpen } from '../upstream.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { readFileSync } = process.getBuiltinModule('node:fs');

/** Distinct destination names counted per proxy; beyond them, `other`. */
export const MAX_DESTINATIONS = 100;
export const OTHER_DESTINATION = 'other';
/** destination_service of the proxy's own answers to egress requests no entry names. */
export const EGRESS_SERVICE = 'egress';
/** Cluster DNS over TCP: never refused (UDP is never captured). */
const DNS_PORT = 53;
/** Most bytes of a plain HTTP request head looked at for its Host as a connection passes. */
const MAX_HEAD_PEEK = 16 * 1024;
const DEFAULT_TLS_PORT = 443;

interface CompiledRule {
  rule: EgressRule;
  ports: ReadonlySet<number> | undefined;
  exact: ReadonlySet<string>;
  /** ".example.com" of each "*.example.com". */
  suffixes: readonly string[];
  cidrs: BlockList | undefined;
  /** PEM roots for originated TLS; undefined: Node's own. */
  ca: string | undefined;
  caError: string | undefined;
}

export interface EgressPolicy {
  mode: EgressMode;
  rules: readonly CompiledRule[];
  /** Some entry originates TLS: plain HTTP goes through the HTTP server to be matched per request. */
  originates: boolean;
  /** Addresses of the config's Services' endpoints. */
  registry: ReadonlySet<string>;
}

const compiled = new WeakMap<ProxyConfig, EgressPolicy>();

/** The egress policy of a config, compiled once per config. */
export function egressPolicy(config: ProxyConfig): EgressPolicy {
  let p = compiled.get(config);
  if (!p) compiled.set(config, (p = compileEgress(config)));
  return p;
}

function compileEgress(config: ProxyConfig): EgressPolicy {
  const mine = config.egress?.allow ?? [];
  const names = new Set(mine.map((r) => r.name));
  const rules = [...(config.mesh.egress?.allow ?? []).filter((r) => !names.has(r.name)), ...mine].map(compileRule);
  const registry = new Set<string>();
  for (const s of config.services) for (const e of s.endpoints) registry.add(e.address);
  return {
    mode: config.egress?.mode ?? config.mesh.egress?.mode ?? 'allow-all',
    rules,
    originates: rules.some((r) => r.rule.originateTls !== undefined),
    registry,
  };
}

function compileRule(rule: EgressRule): CompiledRule {
  const hosts = rule.hosts ?? [];
  let cidrs: BlockList | undefined;
  for (const c of rule.cidrs ?? []) {
    cidrs ??= new BlockList();
    const [address = '', prefix] = c.split('/');
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    cidrs.addSubnet(address, prefix === undefined ? (type === 'ipv6' ? 128 : 32) : Number(prefix), type);
  }
  let ca = rule.originateTls?.caBundle;
  let caError: string | undefined;
  const caFile = rule.originateTls?.caFile;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      caError = `cannot read caFile ${caFile}: ${(e as Error).message}`;
    }
  }
  return {
    rule,
    ports: rule.ports?.length ? new Set(rule.ports) : undefined,
    exact: new Set(hosts.filter((h) => !h.startsWith('*.'))),
    suffixes: hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    cidrs,
    ca,
    caError,
  };
}

/** A Host header's or an SNI's name, lowercased, without port, brackets or a trailing dot. */
export function hostName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let h = value.trim().toLowerCase();
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'));
  else if (h.indexOf(':') === h.lastIndexOf(':')) h = h.split(':')[0]!;
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h === '' ? undefined : h;
}

const hostMatches = (r: CompiledRule, host: string): boolean => r.exact.has(host) || r.suffixes.some((s) => host.length > s.length && host.endsWith(s));
const addressMatches = (r: CompiledRule, address: string): boolean => r.cidrs !== undefined && r.cidrs.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');

/** The first entry allowing `port` of `address`, by `host` (an SNI or Host) when known, else by the address. */
export function matchEgress(policy: EgressPolicy, address: string, port: number, host: string | undefined): CompiledRule | undefined {
  for (const r of policy.rules) {
    if (r.ports && !r.ports.has(port)) continue;
    if ((host !== undefined && hostMatches(r, host)) || addressMatches(r, address)) return r;
  }
  return undefined;
}

/** Only an entry by address (a CIDR), for a decision before any byte is read. */
function matchAddress(policy: EgressPolicy, address: string, port: number): CompiledRule | undefined {
  return policy.rules.find((r) => (!r.ports || r.ports.has(port)) && addressMatches(r, address));
}

/**
 * Reads from a paused socket until `done(bytes)` says enough, the bytes reach
 * `max`, the timeout passes or the client ends; leaves it paused with every
 * byte unshifted back. The bytes read, or undefined when the socket closed.
 */
function readUntil(socket: Socket, done: (bytes: Buffer) => boolean, max: number, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      const bytes = Buffer.concat(chunks, size);
      if (closed || socket.destroyed) return resolve(undefined);
      if (bytes.length > 0) socket.unshift(bytes);
      resolve(bytes);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      const bytes = Buffer.concat(chunks, size);
      if (size >= max || done(bytes)) finish();
    };
    const onEnd = (): void => {
      closed = true;
      finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}

/** The Host of a plain HTTP/1.x request head's first bytes, if they hold it. */
export function hostOfHead(head: Buffer): string | undefined {
  const end = head.indexOf('\r\n\r\n');
  const text = head.subarray(0, end < 0 ? head.length : end).toString('latin1');
  const m = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(text);
  return hostName(m?.[1]);
}

export interface EgressOptions {
  log: Logger;
  metrics: ProxyMetrics;
  sniffTimeoutMs: number;
}

export interface EgressDestination {
  address: string;
  port: number;
}

/** What the listener does with a connection egress let through. */
export interface EgressPaths {
  /** Splice it to where the app dialled. */
  passthrough: () => Promise<unknown>;
  /** Hand it to the HTTP/1.1 server, whose requests `handler` answers. */
  http: (handler: Handler) => void;
}

export class Egress {
  private readonly counter: Counter<'destination' | 'decision'>;
  private readonly names = new Set<string>();
  /** Plain HTTP to destinations outside the mesh; the routing table's pools are retained to the config's endpoints. */
  private readonly pools = new EndpointPools(undefined);
  /** Originated TLS, per entry, address, TLS port and host (SNI). */
  private readonly tlsPools = new Map<string, H1Pool>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: EgressOptions) {
    this.counter = new Counter({ ...family('tsmesh_egress_connections_total'), registers: [opts.metrics.registry] });
  }

  /** Counts a decision under a bounded set of names. */
  count(name: string, decision: EgressDecision): void {
    let label = name;
    if (!this.names.has(name)) {
      if (this.names.size < MAX_DESTINATIONS) this.names.add(name);
      else label = OTHER_DESTINATION;
    }
    this.counter.inc({ destination: label, decision });
  }

  /**
   * Takes a connection to a destination outside the mesh (`head` and
   * `protocol`: what sniffing found, or undefined before it), and lets it
   * through one of `paths` or closes it.
   */
  async connection(socket: Socket, dst: EgressDestination, config: ProxyConfig, sniffed: (() => Promise<{ protocol: string }>), paths: EgressPaths): Promise<void> {
    const policy = egressPolicy(config);
    if (dst.port === DNS_PORT || policy.registry.has(dst.address)) {
      await paths.passthrough();
      return;
    }
    const byAddress = matchAddress(policy, dst.address, dst.port);
    if (byAddress && byAddress.rule.originateTls === undefined) {
      this.count(byAddress.rule.name, 'allowed');
      await paths.passthrough();
      return;
    }
    if (policy.mode === 'allow-all' && !policy.originates) {
      // Nothing to refuse or rewrite: spliced at once (a server-first protocol waits no sniff
      // timeout), named from the client's first bytes as they pass.
      this.nameAsItPasses(socket, policy, dst);
      await paths.passthrough();
      return;
    }
    const { protocol } = await sniffed();
    if (protocol === 'closed' || socket.destroyed) {
      socket.destroy();
      return;
    }
    if (protocol === 'tls') {
      const hello = await readUntil(socket, (b) => parseClientHello(b).kind !== 'incomplete', MAX_CLIENT_HELLO_BYTES, this.opts.sniffTimeoutMs);
      if (hello === undefined) return void socket.destroy();
      const parsed = parseClientHello(hello);
      const sni = parsed.kind === 'client-hello' ? hostName(parsed.serverName) : undefined;
      await this.decide(socket, policy, dst, sni, paths);
      return;
    }
    if (protocol === 'http1') {
      paths.http(this.handler(policy, dst));
      return;
    }
    await this.decide(socket, policy, dst, undefined, paths);
  }

  /** Counts an allowed connection once its first bytes name it (SNI, Host), else by its address when they cannot or do not come. */
  private nameAsItPasses(socket: Socket, policy: EgressPolicy, dst: EgressDestination): void {
    let seen = Buffer.alloc(0);
    let counted = false;
    const count = (host: string | undefined): void => {
      if (counted) return;
      counted = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      this.count(matchEgress(policy, dst.address, dst.port, host)?.rule.name ?? host ?? dst.address, 'allowed');
    };
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      if (seen[0] === 0x16) {
        const hello = parseClientHello(seen);
        if (hello.kind === 'incomplete' && seen.length < MAX_CLIENT_HELLO_BYTES) return;
        return count(hello.kind === 'client-hello' ? hostName(hello.serverName) : undefined);
      }
      if (classify(seen) === 'http1' || classify(seen) === undefined) {
        if (!seen.includes('\r\n\r\n') && seen.length < MAX_HEAD_PEEK) return;
        return count(hostOfHead(seen));
      }
      count(undefined);
    };
    const onClose = (): void => count(undefined);
    const timer = setTimeout(() => count(undefined), this.opts.sniffTimeoutMs);
    socket.on('data', onData);
    // A 'data' listener starts the flow: held until the splice reads, so no byte passes before it.
    socket.pause();
    socket.once('close', onClose);
  }

  private async decide(socket: Socket, policy: EgressPolicy, dst: EgressDestination, host: string | undefined, paths: EgressPaths): Promise<void> {
    const rule = matchEgress(policy, dst.address, dst.port, host);
    const name = rule?.rule.name ?? host ?? dst.address;
    if (rule === undefined && policy.mode === 'registry-only') {
      this.count(name, 'denied');
      this.opts.log.info('egress denied', { destination: `${dst.address}:${dst.port}`, ...(host ? { host } : {}) });
      socket.destroy();
      return;
    }
    this.count(name, 'allowed');
    await paths.passthrough();
  }

  /** Plain HTTP/1.1 to `dst`, request by request: matched by Host, then forwarded, with TLS where the entry originates it. */
  private handler(policy: EgressPolicy, dst: EgressDestination): Handler {
    const plain = { address: dst.address, port: dst.port, identity: undefined };
    return async (req) => {
      const host = hostName(typeof req.headers.host === 'string' ? req.headers.host : undefined);
      const rule = matchEgress(policy, dst.address, dst.port, host);
      const name = rule?.rule.name ?? host ?? dst.address;
      if (rule === undefined && policy.mode === 'registry-only') {
        this.count(name, 'denied');
        return this.local(undefined, 403, 'egress-denied', `tsmesh: egress to ${host ?? dst.address}:${dst.port} is not allowed: no egress entry names it (registry-only mode)`);
      }
      this.count(name, 'allowed');
      const tls = rule?.rule.originateTls;
      try {
        if (tls === undefined || host === undefined) return await forward(this.pools, plain, req);
        if (rule!.caError !== undefined) return this.local(rule, 502, 'egress-tls-failed', `tsmesh: TLS to ${host} for egress entry ${name}: ${rule!.caError}`);
        return await this.tlsPool(rule!, dst.address, tls.port ?? DEFAULT_TLS_PORT, host).request(req);
      } catch (e) {
        const err = e as Error & { cause?: unknown };
        const where = `${host ?? dst.address}:${dst.port}`;
        if (err instanceof OverloadedError) return this.local(rule, 503, 'overloaded', `tsmesh: ${err.message}`);
        if (err instanceof UpstreamConnectError && err.kind === 'tls') return this.local(rule, 502, 'egress-tls-failed', `tsmesh: TLS to ${where} for egress entry ${name} failed: ${err.message}`);
        if (isConnectFailure(err)) return this.local(rule, 503, 'connect-failure', `tsmesh: ${where}: ${err.message}`);
        return this.local(rule, 502, 'upstream-reset', `tsmesh: ${where}: ${err.message}`);
      }
    };
  }

  /** The proxy's own answer, counted in tsmesh_http_errors_total under the entry's name (a name of the config), or EGRESS_SERVICE. */
  private local(rule: CompiledRule | undefined, status: number, reason: LocalError, detail: string): ProxyResponse {
    this.opts.metrics.httpErrors.inc({ direction: 'outbound', destination_service: rule?.rule.name ?? EGRESS_SERVICE, error: reason });
    return localResponse(status, reason, detail);
  }

  private tlsPool(rule: CompiledRule, address: string, port: number, servername: string): H1Pool {
    const key = `${rule.rule.name}|${address}|${port}|${servername}|${rule.ca ?? ''}`;
    let pool = this.tlsPools.get(key);
    if (pool && !pool.closed) return pool;
    const where = `${address}:${port}`;
    const dial = (onread: OnReadOpts): Promise<Socket> =>
      whenOpen(tlsConnect({ host: address, port, servername, ALPNProtocols: ['http/1.1'], ...(rule.ca !== undefined ? { ca: rule.ca } : {}), ...{ onread } }), 'secureConnect', where, CONNECT_TIMEOUT_MS, (e) =>
        failure(e, `TLS with SNI ${servername} to`, where),
      );
    pool = new H1Pool({ address, port, identity: undefined }, undefined, dial);
    this.tlsPools.set(key, pool);
    this.sweeper ??= setInterval(() => {
      for (const p of this.tlsPools.values()) p.closeIdle(30_000);
    }, 10_000).unref();
    return pool;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const pools = [...this.tlsPools.values()];
    this.tlsPools.clear();
    await Promise.all([this.pools.close(), ...pools.map((p) => p.close())]);
  }
}
