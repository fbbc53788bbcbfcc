// `tsmesh control-plane`: one process, three switchable parts.
//   15012 (TLS)  the CA (POST /v1/certificates, GET /v1/trust-bundle) and the
//                discovery stream (GET /v1/config, POST /v1/config/ack, mTLS)
//   9443  (TLS)  the sidecar injector (POST /inject)
//   15014        admin: /metrics, /healthz, /readyz, and the dashboard (/, /api/v1/mesh)
//                when it is given proxies to scrape, `tsmesh tap` (/api/v1/tap)
// Serving certificates come from the mesh CA itself and are re-issued at
// half-life with setSecureContext, so open connections stay up.
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { CertificateAuthority } from '../ca/authority.js';
import type { Authenticator } from '../ca/authn/authenticator.js';
import { createCaMetrics } from '../ca/metrics.js';
import { caRouter } from '../ca/server.js';
import { workloadSpiffeId } from '../contract/spiffe.js';
import type { Logger } from '../lib/log.js';
import { CONTROL_PLANE_NAME, MESH_NAMESPACE } from '../contract/names.js';
import { startWebhookServer, type RunningWebhook } from '../webhook/app.js';
import type { MeshConfig } from '../webhook/mesh-config.js';
import { createAdminServer } from './admin.js';
import { MeshObserver } from './observe/observer.js';
import { HISTORY_INTERVAL_MS } from './observe/history.js';
import { dashboardApi } from './observe/api.js';
import type { MeshView, ScrapeTarget } from './observe/view.js';
import type { MeshSource } from './sources/source.js';
import { Discovery, type ConnectedProxy } from './stream.js';
import { TapServer, tapDials, type TapAuthorizer } from './tap.js';
import { PORTS } from '../contract/ports.js';


export interface ControlPlaneOptions {
  authority: CertificateAuthority;
  /** Serve the CA's API; needs `authenticator`. Default true. */
  ca?: boolean;
  authenticator?: Authenticator;
  /** Serve the discovery stream from this source. */
  meshSource?: MeshSource;
  /** Run the injector with this mesh config. */
  webhook?: { mesh: MeshConfig; port?: number };
  log: Logger;
  /** Metrics of every part; parts created outside (sources) register here too. */
  registry?: Registry;
  host?: string;
  /** 15012 by default; 0 picks a free port. */
  port?: number;
  adminPort?: number;
  /** Extra DNS names for the serving certificate. */
  dnsNames?: string[];
  /** Extra IP addresses for the serving certificate (127.0.0.1 and ::1 are always in it). */
  ipAddresses?: string[];
  /**
   * The proxies whose /metrics the dashboard shows, asked before every scrape
   * and given the proxies on this plane's discovery stream; no dashboard without it.
   */
  scrapeTargets?: (connected: readonly ConnectedProxy[]) => readonly ScrapeTarget[];
  /** Scrape at the live cadence only while the dashboard or its JSON is read (a minute after the last read), at the history's in between. */
  scrapeOnDemand?: boolean;
  /** Roots being retired by a root rotation, streamed in every config (control/ca-rotation.ts). */
  retiredRoots?: () => readonly string[];
  /** The CA material and rotation in force, served at /api/v1/ca on the admin port. */
  caStatus?: () => unknown;
  /**
   * Serve `tsmesh tap` (control/tap.ts) on the admin port: callers authorized
   * by `authorize` (Kubernetes RBAC; none in local mode), proxies dialled at
   * `proxyPort` (the pods' inbound port; undefined: each meshed endpoint's
   * own port, local mode). Needs `meshSource`.
   */
  tap?: { authorize?: TapAuthorizer; proxyPort?: number };
}

export interface RunningControlPlane {
  caPort: number;
  adminPort: number;
  /** HOST:PORT where a client on this machine reaches the admin port (the dashboard, `tsmesh stat --admin-address`). */
  adminAddress: string;
  webhookPort: number | undefined;
  registry: Registry;
  discovery: Discovery | undefined;
  /** What /api/v1/mesh serves (the proxies' golden metrics), in process; undefined without scrapeTargets. */
  meshView(): MeshView | undefined;
  close(): Promise<void>;
}

/** The names the control plane's serving certificate answers to. */
export function servingNames(trustDomain: string, extra: readonly string[] = []): string[] {
  const svc = `${CONTROL_PLANE_NAME}.${MESH_NAMESPACE}`;
  return [...new Set([CONTROL_PLANE_NAME, svc, `${svc}.svc`, `${svc}.svc.${trustDomain}`, 'localhost', ...extra])];
}

function issueServingCertificate(authority: CertificateAuthority, dnsNames: string[], ipAddresses: string[]) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = authority.issue(publicKey.export({ type: 'spki', format: 'der' }), {
    spiffeId: workloadSpiffeId(authority.trustDomain, MESH_NAMESPACE, CONTROL_PLANE_NAME),
    dnsNames,
    ipAddresses,
  });
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, issued };
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<RunningControlPlane> {
  const { authority, log } = opts;
  const host = opts.host ?? '0.0.0.0';
  const registry = opts.registry ?? new Registry();
  if (!opts.registry) collectDefaultMetrics({ register: registry });

  const app = express();
  app.disable('x-powered-by');
  if (opts.ca ?? true) {
    if (!opts.authenticator) throw new Error('the CA needs an authenticator (a token file or Kubernetes TokenReview)');
    app.use(caRouter({ authority, authenticator: opts.authenticator, metrics: createCaMetrics(registry, () => authority.ttlSeconds), log: log.child('ca') }));
  }
  let discovery: Discovery | undefined;
  let unsubscribe = (): void => {};
  if (opts.meshSource) {
    const source = opts.meshSource;
    discovery = new Discovery({
      registry,
      log: log.child('discovery'),
      trustBundle: () => authority.trustBundle.toPem(),
      ...(opts.retiredRoots ? { retiredRoots: opts.retiredRoots } : {}),
      trustDomain: authority.trustDomain,
    });
    app.use(discovery.router());
    const first = source.current();
    if (first) discovery.update(first);
    unsubscribe = source.onChange((m) => discovery!.update(m));
  }

  const names = servingNames(authority.trustDomain, opts.dnsNames);
  const ips = [...new Set(['127.0.0.1', '::1', ...(opts.ipAddresses ?? [])])];
  let serving = issueServingCertificate(authority, names, ips);
  // Client certificates are asked for but not required: the CA serves proxies that have none yet;
  // the discovery stream checks `authorized` itself.
  const tlsOptions = () => ({
    key: serving.key,
    cert: serving.cert,
    ca: authority.trustBundle.toPem(),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2' as const,
  });
  const server: HttpsServer = createHttpsServer(tlsOptions(), app);
  let webhook: RunningWebhook | undefined;
  if (opts.webhook) {
    try {
      webhook = await startWebhookServer({
        mesh: opts.webhook.mesh,
        registry,
        log: log.child('webhook'),
        tls: { key: serving.key, cert: serving.cert },
        host,
        port: opts.webhook.port ?? PORTS.webhook,
      });
    } catch (e) {
      unsubscribe();
      discovery?.close();
      throw e;
    }
  }
  let rotateTimer: NodeJS.Timeout;
  const scheduleRotation = (): void => {
    const life = serving.issued.notAfter.getTime() - Date.now();
    rotateTimer = setTimeout(() => {
      try {
        serving = issueServingCertificate(authority, names, ips);
        server.setSecureContext(tlsOptions());
        webhook?.setTls({ key: serving.key, cert: serving.cert });
        log.info('rotated serving certificate', { expiresAt: serving.issued.notAfter.toISOString() });
      } catch (e) {
        log.error('serving certificate rotation failed; retrying in 30s', { error: (e as Error).message });
      }
      scheduleRotation();
    }, Math.max(30_000, life / 2));
    rotateTimer.unref();
  };
  scheduleRotation();
  // New CA material (a root rotation): a serving certificate from what signs now, the bundle that
  // verifies proxies, and every proxy's config with the new bundle. Open connections stay up.
  const stopMaterial = authority.onMaterialChange(() => {
    try {
      serving = issueServingCertificate(authority, names, ips);
      server.setSecureContext(tlsOptions());
      webhook?.setTls({ key: serving.key, cert: serving.cert });
      log.info('serving certificate re-issued from the new CA material', { root: authority.issuerRoot.fingerprint256 });
    } catch (e) {
      log.error('cannot re-issue the serving certificate from the new CA material; keeping the previous one', { error: (e as Error).message });
    }
    discovery?.refresh();
  });

  const { scrapeTargets } = opts;
  const observer = scrapeTargets
    ? new MeshObserver({ targets: () => scrapeTargets(discovery?.connectedProxies() ?? []), log: log.child('observe'), ...(opts.scrapeOnDemand ? { idleAfterMs: 60_000, idleIntervalMs: HISTORY_INTERVAL_MS } : {}) })
    : undefined;
  const tapOpts = opts.tap;
  const tap =
    tapOpts && opts.meshSource
      ? new TapServer({
          authority,
          log: log.child('tap'),
          dials: (target) => tapDials(opts.meshSource!.current(), discovery?.connectedProxies() ?? [], target, tapOpts.proxyPort),
          ...(tapOpts.authorize ? { authorize: tapOpts.authorize } : {}),
        })
      : undefined;
  const admin: Server = createAdminServer({
    registry,
    readiness: () => (opts.meshSource && !opts.meshSource.current() ? 'no mesh model yet' : undefined),
    ...(discovery ? { proxies: () => discovery!.proxyStates() } : {}),
    ...(observer ? { meshView: () => observer.view(), dashboardApi: dashboardApi({ observer, model: () => opts.meshSource?.current() }) } : {}),
    ...(opts.caStatus ? { caStatus: opts.caStatus } : {}),
    ...(tap ? { tap: (req, res) => tap.handle(req, res) } : {}),
  });
  const close = async (): Promise<void> => {
    clearTimeout(rotateTimer);
    stopMaterial();
    observer?.close();
    tap?.close();
    unsubscribe();
    discovery?.close();
    server.closeAllConnections();
    admin.closeAllConnections();
    const closed = (s: Server | HttpsServer) => (s.listening ? new Promise((r) => s.close(r)) : undefined);
    await Promise.all([closed(server), closed(admin), webhook?.close()]);
  };
  const listen = async (s: Server | HttpsServer, port: number): Promise<void> => {
    s.listen(port, host);
    await once(s, 'listening');
  };
  try {
    await listen(server, opts.port ?? PORTS.controlPlane);
    await listen(admin, opts.adminPort ?? PORTS.controlPlaneAdmin);
  } catch (e) {
    // A port that is taken fails the start and leaves nothing behind.
    await close();
    throw e;
  }
  const caPort = (server.address() as AddressInfo).port;
  const adminPort = (admin.address() as AddressInfo).port;
  // On demand, the live cadence waits for a reader; the history's goes on from the start.
  observer?.start();
  log.info('control plane listening', { caPort, adminPort, webhookPort: webhook?.port, discovery: Boolean(discovery), trustDomain: authority.trustDomain });

  const localHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    caPort,
    adminPort,
    adminAddress: `${localHost.includes(':') ? `[${localHost}]` : localHost}:${adminPort}`,
    webhookPort: webhook?.port,
    registry,
    discovery,
    meshView: () => observer?.view(),
    close,
  };
}
