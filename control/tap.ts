// `tsmesh tap` on the control plane: GET /api/v1/tap on the admin port
// (contract/DESIGN.md, Tap). The caller is authorized (in Kubernetes, by its
// bearer token: TokenReview, then a SubjectAccessReview of verb watch on
// tap.tsmesh.io/tap in the target's namespace, and on tap/headers for
// header values), the target's proxies are found in the model and on the
// discovery stream, and each is dialled over mesh mTLS with the control
// plane's own SPIFFE ID and ALPN tsmesh/tap; their events are merged into
// one NDJSON answer, each with the proxy that saw it.
//
// Why the control plane dials the proxies, and not the other way round: a
// proxy that nobody taps then holds nothing for tap (no connection, no
// timer, no config field: one boolean in its request path), the proxies'
// admin ports stay unreachable from the cluster (tap rides the inbound port
// every meshed pod already accepts mTLS on, served to the control plane's
// identity only, as Linkerd's tap server serves only its tap controller),
// and a tap reaches a proxy streaming from another replica too.
//
// A client that reads slowly is not buffered for: the proxies' connections
// are paused until it has drained, so their events are dropped and counted
// at the proxies (tsmesh_tap_events_dropped_total).
import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createInterface } from 'node:readline';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { CertificateAuthority } from '../ca/authority.js';
import { expectPeerIdentity } from '../ca/peer.js';
import { parseWorkloadSpiffeId } from '../contract/spiffe.js';
import { TAP_ALPN, TAP_DEFAULT_MAX_RPS, TAP_MAX_MAX_RPS, tapCallerIdentity, type TapFilter, type TapProxy, type TapStatusEvent } from '../contract/tap.js';
import { TAP_API_GROUP, TAP_CLUSTER_ROLE, TAP_HEADERS_SUBRESOURCE, TAP_RESOURCE, TAP_VERB } from '../contract/names.js';
import type { Logger } from '../lib/log.js';
import type { MeshModel } from './model.js';
import type { ConnectedProxy } from './stream.js';

export const TAP_PATH = '/api/v1/tap';

/** How long a proxy has to accept the tap connection. */
const DIAL_TIMEOUT_MS = 5000;

/** A bad query: 400 with this message. */
export class TapQueryError extends Error {
  override name = 'TapQueryError';
}

export interface TapTarget {
  kind: 'ns' | 'workload' | 'pod';
  namespace: string;
  /** The ServiceAccount (workload) or the pod; undefined for ns. */
  name?: string;
}

/** The target and filters of a tap, from the endpoint's query. */
export function parseTapQuery(q: URLSearchParams): { target: TapTarget; filter: TapFilter } {
  const raw = q.get('target');
  if (!raw) throw new TapQueryError('target is missing: ns/<namespace>, workload/<serviceaccount>, deploy/<name> or pod/<name>');
  const m = /^(ns|namespace|workload|wl|deploy|deployment|po|pod)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(raw);
  if (!m) throw new TapQueryError(`target ${JSON.stringify(raw)} is not ns/<namespace>, workload/<serviceaccount>, deploy/<name> or pod/<name> (names in lowercase DNS form)`);
  const [kind, name] = [m[1]!, m[2]!];
  let target: TapTarget;
  if (kind === 'ns' || kind === 'namespace') target = { kind: 'ns', namespace: name };
  else {
    const namespace = q.get('namespace') || 'default';
    // A Deployment's pods are the workload of their ServiceAccount; tsmesh takes it to bear the Deployment's name.
    target = { kind: kind === 'po' || kind === 'pod' ? 'pod' : 'workload', namespace, name };
  }
  const filter: TapFilter = { maxRps: TAP_DEFAULT_MAX_RPS, showHeaders: q.get('showHeaders') === 'true' };
  const direction = q.get('direction');
  if (direction !== null) {
    if (direction !== 'inbound' && direction !== 'outbound') throw new TapQueryError(`direction ${JSON.stringify(direction)} must be inbound or outbound`);
    filter.direction = direction;
  }
  const path = q.get('path');
  if (path !== null) {
    if (!path.startsWith('/')) throw new TapQueryError(`path ${JSON.stringify(path)} must be a path prefix starting with "/"`);
    filter.path = path;
  }
  const method = q.get('method');
  if (method !== null) {
    if (!/^[A-Za-z]+$/.test(method)) throw new TapQueryError(`method ${JSON.stringify(method)} is not an HTTP method`);
    filter.method = method.toUpperCase();
  }
  const status = q.get('status');
  if (status !== null) {
    const sm = /^(?:([1-5])xx|([1-5]\d\d))$/.exec(status);
    if (!sm) throw new TapQueryError(`status ${JSON.stringify(status)} must be a code (200) or a class (5xx)`);
    filter.status = Number(sm[1] ?? sm[2]);
  }
  const identity = q.get('identity');
  if (identity !== null) {
    if (!identity.startsWith('spiffe://')) throw new TapQueryError(`identity ${JSON.stringify(identity)} must be a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)`);
    filter.identity = identity;
  }
  const maxRps = q.get('maxRps');
  if (maxRps !== null) {
    const n = Number(maxRps);
    if (!(n > 0 && n <= TAP_MAX_MAX_RPS)) throw new TapQueryError(`maxRps ${JSON.stringify(maxRps)} must be a number above 0 and at most ${TAP_MAX_MAX_RPS}`);
    filter.maxRps = n;
  }
  if (target.kind === 'pod') filter.pod = target.name!;
  return { target, filter };
}

/** One proxy to dial: where, and who must answer. */
export interface TapDial {
  address: string;
  port: number;
  /** The SPIFFE ID the proxy must present. */
  identity: string;
  namespace: string;
  workload: string;
}

/**
 * The proxies of `target`: every meshed endpoint of the model and every proxy
 * on the discovery stream, at `port` (the pods' inbound port); with `port`
 * undefined (local mode, where sidecars listen on ports of their own), each
 * meshed endpoint at its own port, and no connected proxy (its port is not
 * known). A pod target takes every proxy of its namespace: the proxies of
 * other pods end the tap at once.
 */
export function tapDials(model: MeshModel | undefined, connected: readonly ConnectedProxy[], target: TapTarget, port: number | undefined): TapDial[] {
  const byKey = new Map<string, TapDial>();
  const add = (address: string, p: number, identity: string): void => {
    const id = parseWorkloadSpiffeId(identity);
    if (!id || id.namespace !== target.namespace || (target.kind === 'workload' && id.serviceAccount !== target.name)) return;
    const key = `${address}|${p}`;
    if (!byKey.has(key)) byKey.set(key, { address, port: p, identity, namespace: id.namespace, workload: id.serviceAccount });
  };
  for (const service of model?.services ?? []) {
    for (const ep of service.endpoints) {
      if (!ep.identity) continue;
      if (port !== undefined) add(ep.address, port, ep.identity);
      else for (const sp of service.ports) add(ep.address, (sp.name !== undefined ? ep.ports?.[sp.name] : undefined) ?? sp.targetPort, ep.identity);
    }
  }
  if (port !== undefined) for (const p of connected) add(p.address, port, p.identity.spiffeId);
  return [...byKey.values()];
}

/** What authorization says of a caller: go on, or an HTTP status and why not. */
export type TapVerdict = { allowed: true; user: string } | { allowed: false; status: 401 | 403; message: string };

/** Decides whether the caller of a tap (its bearer token, if any) may tap `namespace`, and see header values. */
export type TapAuthorizer = (token: string | undefined, namespace: string, showHeaders: boolean) => Promise<TapVerdict>;

/**
 * Kubernetes RBAC: the token is reviewed (TokenReview), then each permission
 * asked for the user it names (SubjectAccessReview).
 */
export function kubernetesTapAuthorizer(kc: KubeConfig): TapAuthorizer {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return async (token, namespace, showHeaders) => {
    if (!token) {
      return {
        allowed: false,
        status: 401,
        message:
          'tap needs a bearer token the API server accepts (Authorization: Bearer <token>); tsmesh tap sends the kubeconfig\'s token, or --token; ' +
          'with a client certificate only, use a ServiceAccount\'s: kubectl create token <serviceaccount> -n <namespace>',
      };
    }
    const review = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username) {
      return { allowed: false, status: 401, message: `the API server did not accept the bearer token${review.status?.error ? ` (${review.status.error})` : ''}` };
    }
    const asks: { subresource: string | undefined; what: string }[] = [{ subresource: undefined, what: `${TAP_VERB} ${TAP_RESOURCE}.${TAP_API_GROUP}` }];
    if (showHeaders) asks.push({ subresource: TAP_HEADERS_SUBRESOURCE, what: `${TAP_VERB} ${TAP_RESOURCE}/${TAP_HEADERS_SUBRESOURCE}.${TAP_API_GROUP} (for --show-headers)` });
    for (const ask of asks) {
      const sar = await authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            groups: user.groups ?? [],
            ...(user.uid ? { uid: user.uid } : {}),
            ...(user.extra ? { extra: user.extra } : {}),
            resourceAttributes: { group: TAP_API_GROUP, resource: TAP_RESOURCE, verb: TAP_VERB, namespace, ...(ask.subresource ? { subresource: ask.subresource } : {}) },
          },
        },
      });
      if (!sar.status?.allowed) {
        return {
          allowed: false,
          status: 403,
          message:
            `user ${JSON.stringify(user.username)} may not ${ask.what} in namespace ${JSON.stringify(namespace)}; ` +
            `bind ClusterRole ${TAP_CLUSTER_ROLE}: kubectl create rolebinding tap -n ${namespace} --clusterrole ${TAP_CLUSTER_ROLE} --user ${user.username}`,
        };
      }
    }
    return { allowed: true, user: user.username };
  };
}

export interface TapServerOptions {
  authority: CertificateAuthority;
  log: Logger;
  /** The proxies of a target, now. */
  dials: (target: TapTarget) => TapDial[];
  /** Kubernetes RBAC; undefined in local mode, where every caller may tap. */
  authorize?: TapAuthorizer;
}

/** The control plane's client certificate for tap: its own SPIFFE ID, issued by its CA, renewed at half-life. */
class TapCredentials {
  private current: { key: string; cert: string; renewAt: number } | undefined;
  constructor(private readonly authority: CertificateAuthority) {}

  get(): { key: string; cert: string } {
    if (this.current === undefined || Date.now() >= this.current.renewAt) {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const issued = this.authority.issue(publicKey.export({ type: 'spki', format: 'der' }), { spiffeId: tapCallerIdentity(this.authority.trustDomain) });
      const now = Date.now();
      this.current = { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, renewAt: now + (issued.notAfter.getTime() - now) / 2 };
    }
    return this.current;
  }
}

export class TapServer {
  private readonly credentials: TapCredentials;
  private readonly open = new Set<TLSSocket>();

  constructor(private readonly opts: TapServerOptions) {
    this.credentials = new TapCredentials(opts.authority);
  }

  /** Serves GET /api/v1/tap. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.serve(req, res).catch((e: unknown) => {
      this.opts.log.error('tap failed', { error: (e as Error).message });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`tap failed: ${(e as Error).message}\n`);
      else res.end();
    });
  }

  /** Ends every tap (the control plane is closing). */
  close(): void {
    for (const s of this.open) s.destroy();
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = (status: number, message: string): void => void res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
    let parsed: ReturnType<typeof parseTapQuery>;
    try {
      parsed = parseTapQuery(new URL(req.url ?? '/', 'http://x').searchParams);
    } catch (e) {
      if (e instanceof TapQueryError) return text(400, `bad tap request: ${e.message}`);
      throw e;
    }
    const { target, filter } = parsed;
    if (this.opts.authorize) {
      const auth = req.headers.authorization;
      const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
      const verdict = await this.opts.authorize(token, target.namespace, filter.showHeaders);
      if (!verdict.allowed) return text(verdict.status, `tap refused: ${verdict.message}`);
      this.opts.log.info('tap allowed', { user: verdict.user, namespace: target.namespace, target: target.name ?? '', showHeaders: filter.showHeaders });
    }
    const dials = this.opts.dials(target);
    const what = target.kind === 'ns' ? `namespace ${target.namespace}` : `${target.kind} ${target.name} in namespace ${target.namespace}`;
    if (dials.length === 0) return text(404, `no meshed proxy of ${what} is known to the control plane (is it meshed, and does it run?)`);
    if (req.destroyed) return;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    let remaining = dials.length;
    /** Whether any proxy has sent an event (a pod target: whether the pod's proxy took the tap). */
    let heard = false;
    const status = (message: string): void => {
      const event: TapStatusEvent = { type: 'status', proxies: remaining, message };
      res.write(`${JSON.stringify(event)}\n`);
    };
    status(`tapping ${dials.length} prox${dials.length === 1 ? 'y' : 'ies'} of ${what}`);
    const sockets = new Set<TLSSocket>();
    res.on('drain', () => {
      for (const s of sockets) s.resume();
    });
    res.once('close', () => {
      for (const s of sockets) s.destroy();
    });
    const { key, cert } = this.credentials.get();
    const ca = this.opts.authority.trustBundle.toPem();
    const line = `${JSON.stringify(filter)}\n`;
    for (const dial of dials) {
      const proxy: TapProxy = { namespace: dial.namespace, workload: dial.workload, address: `${dial.address.includes(':') ? `[${dial.address}]` : dial.address}:${dial.port}` };
      const socket = tlsConnect({ host: dial.address, port: dial.port, key, cert, ca, ALPNProtocols: [TAP_ALPN], checkServerIdentity: expectPeerIdentity(dial.identity), timeout: DIAL_TIMEOUT_MS });
      sockets.add(socket);
      this.open.add(socket);
      let why = 'its stream ended';
      socket.once('timeout', () => {
        why = `no answer within ${DIAL_TIMEOUT_MS} ms`;
        socket.destroy();
      });
      socket.once('secureConnect', () => {
        socket.setTimeout(0);
        if (socket.alpnProtocol !== TAP_ALPN) {
          why = 'it does not serve tap (a proxy of before tap?)';
          socket.destroy();
          return;
        }
        socket.write(line);
      });
      socket.on('error', (e) => (why = e.message));
      const lines = createInterface({ input: socket, crlfDelay: Infinity });
      lines.on('line', (l) => {
        if (l === '') return;
        let event: { id?: string; type?: string; message?: string };
        try {
          event = JSON.parse(l) as typeof event;
        } catch {
          return;
        }
        if (event.type === 'error') {
          why = `it refused the tap: ${event.message}`;
          return;
        }
        heard = true;
        event.id = `${proxy.address}:${event.id}`;
        if (!res.write(`${JSON.stringify({ ...event, proxy })}\n`)) socket.pause();
      });
      socket.once('close', () => {
        sockets.delete(socket);
        this.open.delete(socket);
        remaining--;
        if (res.writableEnded || res.destroyed) return;
        // A pod target: the other pods' proxies end at once, and say nothing of it.
        if (filter.pod === undefined || why !== 'its stream ended') status(`proxy ${proxy.address} (${proxy.workload}) is gone: ${why}`);
        if (remaining > 0) return;
        if (filter.pod !== undefined && !heard) status(`no proxy of namespace ${target.namespace} is pod ${filter.pod} (is it meshed, and does it run?)`);
        res.end();
      });
    }
  }
}
