// The discovery stream on the control plane's TLS port (15012):
//   GET  /v1/config       newline-delimited JSON: one ProxyConfig per line,
//                         the current one at once, then one per change; an
//                         empty line every 15 s keeps idle connections alive
//                         (with DELTAS_HEADER: a whole config first, then
//                         deltas, contract/config-delta.ts)
//   POST /v1/config/ack   {"version": "..."}: the proxy runs that version
// Both need the proxy's mesh certificate (mTLS): the caller is known by it,
// and only an X.509-SVID of the mesh's trust domain names a caller.
import type { Request, Response, Router } from 'express';
import express from 'express';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { parseWorkloadSpiffeId } from '../contract/spiffe.js';
import { ACK_ADDRESS_HEADER, DELTAS_HEADER, POD_NAME_HEADER } from '../contract/proxy-status.js';
import type { Logger } from '../lib/log.js';
import { socketPeerSvid } from '../ca/peer.js';
import { TrustBundle } from '../ca/trust-bundle.js';
import type { MeshModel, ProxyIdentity } from './model.js';
import { deltaLine, ModelView } from './config-views.js';
import { family } from '../contract/metrics.js';

export const HEARTBEAT_MS = 15_000;

/** What a proxy on the stream trusts and holds, as it last acknowledged (root rotation, ca/rotation.ts). */
export interface ProxyTrustState {
  identity: ProxyIdentity;
  address: string | undefined;
  /** Fingerprints of the roots of the last config it acknowledged; undefined before its first acknowledgement. */
  bundle?: readonly string[];
  /** Fingerprint of the root that the certificate it last presented (on the stream or with an acknowledgement) chains to. */
  certRoot?: string;
}

/** The root a TLS peer's verified chain ends in (its fingerprint), or undefined. */
function peerRoot(socket: TLSSocket): string | undefined {
  let cert = socket.getPeerCertificate(true) as DetailedPeerCertificate | undefined;
  for (let i = 0; cert?.fingerprint256 && i < 8; i++) {
    const up = cert.issuerCertificate as DetailedPeerCertificate | undefined;
    if (!up || up === cert || up.fingerprint256 === cert.fingerprint256) return cert.fingerprint256;
    cert = up;
  }
  return undefined;
}

/** A proxy on the stream: who it is and the address it connects from. */
export interface ConnectedProxy {
  identity: ProxyIdentity;
  address: string;
}

interface Subscriber {
  identity: ProxyIdentity;
  /** The proxy's address as this end of the connection sees it (in a cluster, its pod IP). */
  address: string | undefined;
  res: Response;
  /** It reads deltas (it sent DELTAS_HEADER). */
  deltas: boolean;
  /** The version and digest of the config it was last sent (it holds no copy of it: proxyStates rebuilds one). */
  version: string | undefined;
  digest: string | undefined;
  /** The root its stream connection's certificate chains to. */
  certRoot: string | undefined;
}

/** A proxy's last acknowledgement, by SPIFFE ID and address (its acknowledgements come on connections of their own). */
interface Acknowledgement {
  bundle: readonly string[] | undefined;
  certRoot: string | undefined;
}

export interface StreamMetrics {
  connected: Gauge;
  pushes: Counter;
  pushLatency: Histogram;
  configBytes: Gauge;
}

function createStreamMetrics(registry: Registry): StreamMetrics {
  return {
    connected: new Gauge({ ...family('tsmesh_control_connected_proxies'), registers: [registry] }),
    pushes: new Counter({ ...family('tsmesh_control_pushes_total'), registers: [registry] }),
    pushLatency: new Histogram({
      ...family('tsmesh_control_push_latency_seconds'),
      registers: [registry],
    }),
    configBytes: new Gauge({ ...family('tsmesh_control_config_bytes'), registers: [registry] }),
  };
}

export interface DiscoveryOptions {
  registry: Registry;
  log: Logger;
  /** The trust bundle to stream with every config. */
  trustBundle: () => string;
  /** Roots being retired (fingerprints), streamed with every config while there are any. */
  retiredRoots?: () => readonly string[];
  /** The mesh's trust domain: callers hold an X.509-SVID of it. */
  trustDomain: string;
}

/** Tracks the model and the subscribers, and pushes each change. */
export class Discovery {
  private model: MeshModel | undefined;
  /** The model of the last version as the stream sends it. */
  private view: ModelView | undefined;
  private version = 0;
  /** Versions of one process share this prefix, so a restarted control plane never repeats one. */
  private readonly epoch = Date.now().toString(36);
  /** When each version's change happened (ms), for push latency. */
  private readonly changedAt = new Map<string, number>();
  private readonly subscribers = new Set<Subscriber>();
  /** What each subscriber was sent and acknowledged, for `tsmesh proxy-status` (proxies.ts). */
  private readonly states = new WeakMap<Subscriber, StreamState>();
  /** The roots of the bundle each recent version carried. */
  private readonly versionRoots = new Map<string, readonly string[]>();
  private readonly acks = new Map<string, Acknowledgement>();
  private readonly ackListeners = new Set<() => void>();
  private readonly metrics: StreamMetrics;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly opts: DiscoveryOptions) {
    this.metrics = createStreamMetrics(opts.registry);
    this.heartbeat = setInterval(() => {
      for (const s of this.subscribers) s.res.write('\n');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** The proxies on the stream now: who each is and where it connects from. */
  connectedProxies(): ConnectedProxy[] {
    const out: ConnectedProxy[] = [];
    for (const s of this.subscribers) if (s.address !== undefined) out.push({ identity: s.identity, address: s.address });
    return out;
  }

  /** What each proxy on the stream last acknowledged of the trust bundle and its certificate. */
  trustStates(): ProxyTrustState[] {
    return [...this.subscribers].map((s) => {
      const ack = this.acks.get(ackKey(s.identity.spiffeId, s.address));
      const certRoot = ack?.certRoot ?? s.certRoot;
      return { identity: s.identity, address: s.address, ...(ack?.bundle ? { bundle: ack.bundle } : {}), ...(certRoot ? { certRoot } : {}) };
    });
  }

  /** Called after every acknowledgement and every proxy that leaves the stream; returns an unsubscribe function. */
  onTrustChange(listener: () => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Pushes the current model again: the trust bundle or the retired roots changed. */
  refresh(): void {
    if (this.model) this.update(this.model);
  }

  /** Every subscriber's state: who, where from, what it was sent and what it acknowledged. */
  proxyStates(): ProxyStreamState[] {
    const out: ProxyStreamState[] = [];
    for (const s of this.subscribers) {
      const state = this.states.get(s);
      if (!state || s.address === undefined) continue;
      const { acked } = state;
      const view = this.view;
      out.push({
        identity: s.identity,
        address: s.address,
        ...state,
        // The config it runs, rebuilt from the model while it is the one last sent to it (every change is sent at once, so that is the model's).
        ackedConfig: () => (acked && view && acked.version === s.version && view.classView(s.identity).digest === s.digest ? view.body(s.identity, acked.version) : undefined),
      });
    }
    return out;
  }

  /** Takes a new model and pushes what changed to every subscriber. */
  update(model: MeshModel, changedAtMs = Date.now()): void {
    this.model = model;
    this.version++;
    const v = this.versionString();
    this.changedAt.set(v, changedAtMs);
    if (this.changedAt.size > 64) this.changedAt.delete(this.changedAt.keys().next().value!);
    this.versionRoots.set(v, new TrustBundle(this.opts.trustBundle()).fingerprints());
    if (this.versionRoots.size > 64) this.versionRoots.delete(this.versionRoots.keys().next().value!);
    const prev = this.view;
    const view = new ModelView(model, v, this.opts.trustBundle(), this.opts.retiredRoots?.() ?? [], prev);
    this.view = view;
    // Proxies of one ServiceAccount get the same config: each line is made once per identity.
    const bodies = new Map<string, string>();
    const tails = new Map<string, string | undefined>();
    let largest = 0;
    for (const s of this.subscribers) {
      const key = s.identity.spiffeId;
      const digest = view.classView(s.identity).digest;
      if (s.digest === digest) continue;
      // A delta applies to what prev sent it; a proxy that holds anything else gets the whole config.
      if (s.deltas && s.version !== undefined && prev && prev.classView(s.identity).digest === s.digest) {
        if (!tails.has(key)) tails.set(key, view.deltaTail(prev, s.identity));
        const tail = tails.get(key);
        if (tail !== undefined) {
          this.push(s, deltaLine(v, s.version, tail), digest);
          continue;
        }
      }
      let body = bodies.get(key);
      if (body === undefined) {
        body = view.body(s.identity);
        bodies.set(key, body);
        largest = Math.max(largest, body.length);
      }
      this.push(s, body, digest);
    }
    view.settle();
    if (largest) this.metrics.configBytes.set(largest);
  }

  private push(s: Subscriber, line: string, digest: string): void {
    s.version = this.versionString();
    s.digest = digest;
    const state = this.states.get(s);
    if (state) state.sent = { version: s.version, at: Date.now() };
    s.res.write(`${line}\n`);
    this.metrics.pushes.inc();
  }

  private versionString(): string {
    return `${this.epoch}-${this.version}`;
  }

  router(): Router {
    const router = express.Router();
    router.get('/v1/config', (req, res) => {
      const identity = this.callerOf(req);
      if (typeof identity === 'string') {
        res.status(401).json({ error: { code: 'unauthenticated', message: identity } });
        return;
      }
      const here = ownAddress(req);
      const deltas = req.headers[DELTAS_HEADER] === '1';
      res.writeHead(200, {
        'content-type': 'application/x-ndjson',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        ...(here ? { [ACK_ADDRESS_HEADER]: here } : {}),
        ...(deltas ? { [DELTAS_HEADER]: '1' } : {}),
      });
      res.flushHeaders();
      const sub: Subscriber = { identity, address: peerAddress(req), res, deltas, version: undefined, digest: undefined, certRoot: peerRoot(req.socket as TLSSocket) };
      this.subscribers.add(sub);
      this.states.set(sub, subscribed(req));
      this.metrics.connected.set(this.subscribers.size);
      this.opts.log.debug('proxy subscribed', { spiffeId: identity.spiffeId, subscribers: this.subscribers.size });
      req.socket.setKeepAlive(true, 30_000);
      res.once('close', () => {
        this.subscribers.delete(sub);
        this.metrics.connected.set(this.subscribers.size);
        const key = ackKey(identity.spiffeId, sub.address);
        if (![...this.subscribers].some((s) => ackKey(s.identity.spiffeId, s.address) === key)) this.acks.delete(key);
        for (const l of this.ackListeners) l();
      });
      if (this.view) {
        this.push(sub, this.view.body(identity), this.view.classView(identity).digest);
      }
    });
    router.post('/v1/config/ack', express.json({ limit: 1024 }), (req, res) => {
      const caller = this.callerOf(req);
      if (typeof caller === 'string') {
        res.status(401).end();
        return;
      }
      const version = (req.body as { version?: unknown } | undefined)?.version;
      const at = typeof version === 'string' ? this.changedAt.get(version) : undefined;
      if (at !== undefined) this.metrics.pushLatency.observe((Date.now() - at) / 1000);
      if (typeof version === 'string') this.acknowledged(req, version);
      // What the proxy trusts (the bundle of the version it runs) and holds (the certificate it acknowledged with).
      const key = ackKey(caller.spiffeId, peerAddress(req));
      const bundle = typeof version === 'string' ? this.versionRoots.get(version) : undefined;
      this.acks.set(key, { bundle: bundle ?? this.acks.get(key)?.bundle, certRoot: peerRoot(req.socket as TLSSocket) });
      for (const l of this.ackListeners) l();
      res.status(204).end();
    });
    return router;
  }

  /**
   * Marks `version` acknowledged by the subscriber it was sent to: of the
   * caller's streams from its address, the one sent that version and not yet
   * acknowledging it (proxies of one ServiceAccount on one address, as on
   * loopback, are sent the same configs), else its only one.
   */
  private acknowledged(req: Request, version: string): void {
    const caller = this.callerOf(req);
    if (typeof caller === 'string') return;
    const remote = req.socket.remoteAddress;
    const address = remote?.startsWith('::ffff:') ? remote.slice(7) : remote;
    const mine = [...this.subscribers].filter((s) => s.identity.spiffeId === caller.spiffeId && s.address === address);
    const sent = (s: Subscriber): boolean => this.states.get(s)?.sent?.version === version;
    const sub = mine.find((s) => sent(s) && this.states.get(s)?.acked?.version !== version) ?? mine.find(sent) ?? (mine.length === 1 ? mine[0] : undefined);
    const state = sub && this.states.get(sub);
    if (!sub || !state) return;
    const now = Date.now();
    state.acked = { version, at: now };
    state.lastSeen = now;
    state.certExpiresAt = certExpiry(req) ?? state.certExpiresAt;
  }

  close(): void {
    this.ackListeners.clear();
    clearInterval(this.heartbeat);
    for (const s of this.subscribers) s.res.end();
    this.subscribers.clear();
  }

  /** The proxy behind a request, from its verified client certificate; or why there is none, to answer with 401. */
  private callerOf(req: Request): ProxyIdentity | string {
    const socket = req.socket as TLSSocket;
    if (!socket.authorized) return "the discovery stream needs the proxy's mesh certificate (mutual TLS)";
    let spiffeId: string;
    try {
      spiffeId = socketPeerSvid(socket, this.opts.trustDomain);
    } catch (e) {
      this.opts.log.warn('discovery refused a client certificate: not an X.509-SVID of this mesh', {
        remote: socket.remoteAddress,
        rule: (e as { rule?: string }).rule,
        error: (e as Error).message,
      });
      return `the client certificate is not an X.509-SVID of this mesh: ${(e as Error).message}`;
    }
    const w = parseWorkloadSpiffeId(spiffeId);
    if (!w) return `${spiffeId} is not a workload's identity (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`;
    return { spiffeId, namespace: w.namespace, serviceAccount: w.serviceAccount };
  }
}

function ackKey(spiffeId: string, address: string | undefined): string {
  return `${spiffeId} ${address ?? ''}`;
}

/** This end of the request's connection, host:port: behind a Service's virtual IP, this replica's own address. */
function ownAddress(req: Request): string | undefined {
  const { localAddress, localPort } = req.socket;
  if (!localAddress || !localPort) return undefined;
  const host = localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress;
  return host.includes(':') ? `[${host}]:${localPort}` : `${host}:${localPort}`;
}

/** The caller's address as this end sees it; an IPv4 peer on a dual-stack socket reads as ::ffff:a.b.c.d. */
function peerAddress(req: Request): string | undefined {
  const remote = req.socket.remoteAddress;
  return remote?.startsWith('::ffff:') ? remote.slice(7) : remote;
}

/** What this end knows of one subscriber's stream, beside its config. */
interface StreamState {
  /** The pod's name as the proxy gave it (POD_NAME_HEADER); undefined from a proxy that gives none. */
  pod: string | undefined;
  connectedAt: number;
  /** The version of the last config written to it, and when. */
  sent: { version: string; at: number } | undefined;
  /** The last version it acknowledged, and when. */
  acked: { version: string; at: number } | undefined;
  /** When the certificate it last presented (subscribing or acknowledging) expires, ms. */
  certExpiresAt: number | undefined;
  /** Its last request to this end: the subscription or an acknowledgement. */
  lastSeen: number;
}

/** One proxy on the stream as `tsmesh proxy-status` sees it (proxies.ts). */
export type ProxyStreamState = ConnectedProxy &
  StreamState & {
    /** The config it acknowledged last, as sent (its version first), while it is the last one sent to it; rebuilt from the model when asked. */
    ackedConfig: () => string | undefined;
  };

function subscribed(req: Request): StreamState {
  const now = Date.now();
  return { pod: podName(req.headers[POD_NAME_HEADER]), connectedAt: now, sent: undefined, acked: undefined, certExpiresAt: certExpiry(req), lastSeen: now };
}

/** A pod name as Kubernetes spells one (a DNS subdomain); anything else is not shown. */
function podName(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' && v.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v) ? v : undefined;
}

/** When the client certificate of the request's connection expires, ms. */
function certExpiry(req: Request): number | undefined {
  const validTo = (req.socket as TLSSocket).getPeerCertificate().valid_to;
  const ms = validTo ? Date.parse(validTo) : NaN;
  return Number.isNaN(ms) ? undefined : ms;
}
