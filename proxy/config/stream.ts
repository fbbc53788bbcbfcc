// The proxy's end of the discovery stream: GET /v1/config on the control
// plane over mTLS, one ProxyConfig per line. The last good config stays in
// force while the stream is down; reconnects back off with jitter, capped at
// a few seconds (STREAM_BACKOFF); each config taken is acknowledged
// (POST /v1/config/ack) for push-latency metrics. It asks for deltas
// (DELTAS_HEADER, contract/config-delta.ts): after the first whole config,
// lines carry only what changed; a delta for another version than the one
// held, or one that yields another digest than the control plane's, ends the
// stream, and the reconnect brings a whole config.
import { ACK_ADDRESS_HEADER, DELTAS_HEADER, POD_NAME_HEADER } from '../../contract/proxy-status.js';
import { addHash, configDigest, DELTA_KIND, entryHash, serviceKey, subHash } from '../../contract/config-delta.js';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { backoffDelay, type BackoffOptions } from '../../lib/backoff.js';
import type { Logger } from '../../lib/log.js';
import { systemScheduler, type Scheduler, type TimerHandle } from '../../lib/scheduler.js';
import type { ConfigSource } from './source.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { parseProxyConfig } from '../../contract/validate.js';

export const CONFIG_PATH = '/v1/config';
export const ACK_PATH = '/v1/config/ack';
/** A stream silent for this long is presumed dead (the control plane sends a heartbeat every 15 s). */
export const STREAM_IDLE_MS = 45_000;
/** One config line larger than this is refused (and the stream restarted). */
export const MAX_CONFIG_LINE_BYTES = 32 * 1024 * 1024;
/**
 * Reconnect delays. A proxy waiting on a dead control plane costs it nothing,
 * but one waiting long after it came back runs on a stale config: capped at
 * 3 s, every proxy is back within about 3 s of the control plane (Linkerd's
 * and Envoy's discovery clients also retry about every second). The jitter
 * spreads a thousand proxies that lost the stream at the same moment over
 * 1.5 s at the cap, so they do not reconnect in step.
 */
export const STREAM_BACKOFF: Readonly<BackoffOptions> = { minMs: 200, maxMs: 3_000, factor: 2, jitter: 0.5 };
/** A stream that lasted this long ended as a healthy one does: the next reconnect starts from the first delay. One that ended sooner (a control plane that takes streams and drops them) keeps backing off. */
export const STREAM_STABLE_MS = 10_000;

export interface StreamConfigOptions {
  /** host:port of the control plane (TSMESH_CONTROL_PLANE_ADDRESS). */
  address: string;
  /** The TLS material in force (key, cert, ca); undefined until the proxy holds a certificate. */
  tls: () => { key: string; cert: string; ca: string } | undefined;
  log: Logger;
  scheduler?: Scheduler;
  random?: () => number;
  /** The pod's name (TSMESH_POD_NAME), given with the subscription for `tsmesh proxy-status`. */
  podName?: string | undefined;
  /** Ask for deltas (DELTAS_HEADER); default true. False: a whole config every change, as proxies before deltas. */
  deltas?: boolean;
}

/**
 * The config the control plane holds this proxy to, as it sent it (not as
 * validated): deltas apply to it. Kept even when the proxy refused it, since
 * the next delta applies to it all the same.
 */
interface Held {
  version: string;
  /** By serviceKey, in the order received: the entry as sent and its share of the digest. */
  services: Map<string, { entry: unknown; h: bigint }>;
  servicesSum: bigint;
  /** Fields beside version and services, as sent, and their JSON (for the digest). */
  fields: Record<string, unknown>;
  json: Record<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function holdSnapshot(doc: Record<string, unknown>): Held | undefined {
  if (!Array.isArray(doc.services) || typeof doc.version !== 'string') return undefined;
  const held: Held = { version: doc.version, services: new Map(), servicesSum: 0n, fields: {}, json: {} };
  for (const [name, value] of Object.entries(doc)) {
    if (name === 'version' || name === 'services') continue;
    held.fields[name] = value;
    held.json[name] = JSON.stringify(value);
  }
  for (const entry of doc.services as unknown[]) upsert(held, entry);
  return held;
}

function upsert(held: Held, entry: unknown): void {
  if (!isObject(entry)) throw new Error('a Service entry is not an object');
  const key = serviceKey(entry);
  const old = held.services.get(key);
  if (old) held.servicesSum = subHash(held.servicesSum, old.h);
  const h = entryHash(JSON.stringify(entry));
  held.services.set(key, { entry, h });
  held.servicesSum = addHash(held.servicesSum, h);
}

/** Applies delta `doc` to `held` in place; throws when it is malformed or yields another digest than the one it carries. */
function applyDelta(held: Held, doc: Record<string, unknown>): void {
  const { upsert: up = [], remove = [], set = {}, unset = [] } = doc;
  if (!Array.isArray(up) || !Array.isArray(remove) || !isObject(set) || !Array.isArray(unset) || typeof doc.version !== 'string' || typeof doc.digest !== 'string') throw new Error('a malformed delta');
  for (const entry of up) upsert(held, entry);
  for (const key of remove) {
    const old = held.services.get(String(key));
    if (!old) throw new Error(`the delta removes ${String(key)}, which this proxy does not hold`);
    held.servicesSum = subHash(held.servicesSum, old.h);
    held.services.delete(String(key));
  }
  for (const [name, value] of Object.entries(set)) {
    if (name === 'version' || name === 'services') throw new Error(`the delta sets ${name}`);
    held.fields[name] = value;
    held.json[name] = JSON.stringify(value);
  }
  const gone = new Set(unset.map(String));
  if (gone.size > 0) {
    held.fields = Object.fromEntries(Object.entries(held.fields).filter(([name]) => !gone.has(name)));
    held.json = Object.fromEntries(Object.entries(held.json).filter(([name]) => !gone.has(name)));
  }
  held.version = doc.version;
  const digest = configDigest(held.json, held.servicesSum);
  if (digest !== doc.digest) throw new Error(`the config after delta ${doc.version} has digest ${digest}, not ${doc.digest}`);
}

/** The held config as a document for parseProxyConfig, as a whole config line would be. */
function heldDocument(held: Held): Record<string, unknown> {
  return { version: held.version, ...held.fields, services: [...held.services.values()].map((s) => s.entry) };
}

function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`control plane address ${JSON.stringify(address)} is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** The replica's own address from its answer, when it gave a well-formed one. */
function ackTarget(header: string | string[] | undefined): { host: string; port: number } | undefined {
  if (typeof header !== 'string') return undefined;
  try {
    const target = splitAddress(header);
    return target.port > 0 && target.port < 65536 ? target : undefined;
  } catch {
    return undefined;
  }
}

export class StreamConfigSource implements ConfigSource {
  private config: ProxyConfig | undefined;
  private readonly listeners = new Set<(c: ProxyConfig) => void>();
  private attempt = 0;
  private timer: TimerHandle | undefined;
  private response: IncomingMessage | undefined;
  private closed = false;
  private readonly host: string;
  private readonly port: number;
  private readonly scheduler: Scheduler;
  /** Keeps the acknowledgement connection open between configs; renewed with the certificate. */
  private agent: { cert: string; agent: Agent } | undefined;
  /** Where acknowledgements go: the replica serving the stream (ACK_ADDRESS_HEADER), else the address dialled. */
  private ackTarget: { host: string; port: number } | undefined;
  /** What the control plane holds this proxy to on the current stream; undefined before its first whole config. */
  private held: Held | undefined;

  constructor(private readonly opts: StreamConfigOptions) {
    ({ host: this.host, port: this.port } = splitAddress(opts.address));
    this.scheduler = opts.scheduler ?? systemScheduler;
  }

  current(): ProxyConfig | undefined {
    return this.config;
  }

  onChange(listener: (c: ProxyConfig) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Connects, and keeps reconnecting until close(). */
  start(): void {
    this.connect();
  }

  private requestOptions(path: string, method: string): RequestOptions | undefined {
    const tls = this.opts.tls();
    if (!tls) return undefined;
    if (this.agent?.cert !== tls.cert) {
      this.agent?.agent.destroy();
      this.agent = { cert: tls.cert, agent: new Agent({ keepAlive: true, maxSockets: 1, key: tls.key, cert: tls.cert, ca: tls.ca }) };
    }
    // Verified by the name dialled, wherever the request goes.
    const servername = /^[\d.:]+$/.test(this.host) ? undefined : this.host;
    const to = method === 'POST' && this.ackTarget ? this.ackTarget : { host: this.host, port: this.port };
    const dialled = this.host;
    const verify = to.host === dialled ? {} : { checkServerIdentity: (_: string, cert: PeerCertificate) => checkServerIdentity(dialled, cert) };
    return { ...verify, host: to.host, port: to.port, path, method, key: tls.key, cert: tls.cert, ca: tls.ca, servername, timeout: 10_000, ...(method === 'POST' ? { agent: this.agent.agent } : { agent: false, headers: { ...(this.opts.podName ? { [POD_NAME_HEADER]: this.opts.podName } : {}), ...(this.opts.deltas === false ? {} : { [DELTAS_HEADER]: '1' }) } }) } as RequestOptions;
  }

  private retry(why: string): void {
    if (this.closed) return;
    const delay = backoffDelay(this.attempt++, STREAM_BACKOFF, this.opts.random);
    this.opts.log.info('discovery stream down; reconnecting', { why, inMs: delay, version: this.config?.version });
    this.timer = this.scheduler.setTimeout(() => this.connect(), delay);
  }

  private connect(): void {
    if (this.closed) return;
    const options = this.requestOptions(CONFIG_PATH, 'GET');
    if (!options) {
      this.timer = this.scheduler.setTimeout(() => this.connect(), 200);
      return;
    }
    const req = httpsRequest(options, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        this.retry(`the control plane answered ${res.statusCode}`);
        return;
      }
      this.response = res;
      this.ackTarget = ackTarget(res.headers[ACK_ADDRESS_HEADER]);
      const connectedAt = this.scheduler.now();
      this.opts.log.info('discovery stream connected', { address: this.opts.address });
      res.setTimeout(STREAM_IDLE_MS, () => res.destroy(new Error(`no data for ${STREAM_IDLE_MS} ms`)));
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        if (buffered.length > MAX_CONFIG_LINE_BYTES) {
          res.destroy(new Error(`a config line exceeds ${MAX_CONFIG_LINE_BYTES} bytes`));
          return;
        }
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() !== '' && !this.take(line)) {
            buffered = '';
            res.destroy(new Error('the stream and this proxy disagree on its config; reconnecting for a whole one'));
            return;
          }
        }
      });
      // A new stream: no delta applies until its first whole config.
      this.held = undefined;
      let ended = false;
      const end = (why: string): void => {
        if (ended) return;
        ended = true;
        this.response = undefined;
        if (this.scheduler.now() - connectedAt >= STREAM_STABLE_MS) this.attempt = 0;
        this.retry(why);
      };
      res.once('error', (e: Error) => end(e.message));
      res.once('end', () => end('the control plane ended the stream'));
      res.once('close', () => end('the connection closed'));
    });
    req.once('error', (e: Error) => this.retry(e.message));
    req.once('timeout', () => req.destroy(new Error('connect timed out')));
    req.end();
  }

  /** Takes one line; false when the stream must end (a delta that does not apply to what this proxy holds). */
  private take(line: string): boolean {
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (e) {
      // A config this proxy cannot read must not replace one it can; after a line it cannot read, no delta applies.
      this.opts.log.error('discovery sent a config this proxy refuses; keeping the last good one', { error: (e as Error).message, version: this.config?.version });
      this.held = undefined;
      return true;
    }
    if (isObject(doc) && doc.kind === DELTA_KIND) {
      const held = this.held;
      if (!held || held.version !== doc.base) {
        this.opts.log.warn('discovery sent a delta for another version than this proxy holds', { base: String(doc.base), holds: held?.version });
        this.held = undefined;
        return false;
      }
      try {
        applyDelta(held, doc);
      } catch (e) {
        this.opts.log.warn('a delta from discovery did not apply', { error: (e as Error).message, version: String(doc.version) });
        this.held = undefined;
        return false;
      }
      doc = heldDocument(held);
    } else {
      try {
        this.held = isObject(doc) ? holdSnapshot(doc) : undefined;
      } catch {
        // A whole config whose Services are not objects: the validator below refuses it, and no delta applies to it.
        this.held = undefined;
      }
    }
    let config: ProxyConfig;
    try {
      config = parseProxyConfig(doc);
    } catch (e) {
      // A config this proxy cannot read must not replace one it can.
      this.opts.log.error('discovery sent a config this proxy refuses; keeping the last good one', { error: (e as Error).message, version: this.config?.version });
      return true;
    }
    this.config = config;
    for (const l of this.listeners) l(config);
    this.ack(config.version);
    return true;
  }

  /**
   * Acknowledges the config in force again, with the certificate in force:
   * after a renewal, so the control plane knows which root the proxy's
   * certificate chains to now (a root rotation waits for it).
   */
  acknowledge(): void {
    if (this.config && !this.closed) this.ack(this.config.version);
  }

  private ack(version: string): void {
    const options = this.requestOptions(ACK_PATH, 'POST');
    if (!options) return;
    const body = JSON.stringify({ version });
    const req = httpsRequest({ ...options, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => res.resume());
    req.once('error', () => undefined);
    req.end(body);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer);
    this.response?.destroy();
    this.agent?.agent.destroy();
    this.listeners.clear();
  }
}
