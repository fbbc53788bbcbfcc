// The proxy's end of the discovery stream: GET /v1/config on the control
// plane over mTLS, one ProxyConfig per line. The last good config stays in
// force while the stream is down; reconnects back off with jitter, capped at
// a few seconds (STREAM_BACKOFF); each config taken is acknowledged
// (POST /v1/config/ack) for push-latency metrics.
import { ACK_ADDRESS_HEADER, POD_NAME_HEADER } from '../../contract/proxy-status.js';
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
    return { ...verify, host: to.host, port: to.port, path, method, key: tls.key, cert: tls.cert, ca: tls.ca, servername, timeout: 10_000, ...(method === 'POST' ? { agent: this.agent.agent } : { agent: false, headers: this.opts.podName ? { [POD_NAME_HEADER]: this.opts.podName } : {} }) } as RequestOptions;
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
          if (line.trim() !== '') this.take(line);
        }
      });
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

  private take(line: string): void {
    let config: ProxyConfig;
    try {
      config = parseProxyConfig(JSON.parse(line));
    } catch (e) {
      // A config this proxy cannot read must not replace one it can.
      this.opts.log.error('discovery sent a config this proxy refuses; keeping the last good one', { error: (e as Error).message, version: this.config?.version });
      return;
    }
    this.config = config;
    for (const l of this.listeners) l(config);
    this.ack(config.version);
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
