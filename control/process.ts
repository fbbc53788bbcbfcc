// The control plane process: CA material, the authenticator (Kubernetes
// TokenReview, or a token file in local mode), the mesh source (Kubernetes, or
// a Mesh file), and in Kubernetes mode the leader election with what only the
// leader writes, the certificate lifetime of ConfigMap tsmesh-config and the
// dashboard's scrape targets; then the servers of plane.ts. `tsmesh
// control-plane` runs it from its flags; `tsmesh demo` runs it in local mode.
// What belongs to the OS process alone (signals, the exit code) stays in
// cli/commands/control-plane.ts.
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Authenticator } from '../ca/authn/authenticator.js';
import { KubernetesAuthenticator, apiServerTokenReviewer } from '../ca/authn/kubernetes.js';
import { TokenFileAuthenticator } from '../ca/authn/token-file.js';
import { CertificateAuthority } from '../ca/authority.js';
import { readCaMaterial } from '../ca/material.js';
import { MESH_NAMESPACE, WEBHOOK_CONFIGURATION_NAME } from '../contract/names.js';
import { PORTS } from '../contract/ports.js';
import { DEFAULT_TRUST_DOMAIN } from '../contract/spiffe.js';
import type { Logger } from '../lib/log.js';
import { meshConfig } from '../webhook/mesh-config.js';
import { followMeshCertificateTtl } from './cert-ttl.js';
import { startLeaderElection, type LeaderElection } from './leader.js';
import { scrapeTargets as meshScrapeTargets } from './observe/targets.js';
import { startControlPlane, type ControlPlaneOptions, type RunningControlPlane } from './plane.js';
import { kubernetesTapAuthorizer } from './tap.js';
import { FileMeshSource } from './sources/file.js';
import { createKubernetesSource } from './sources/kubernetes.js';
import type { MeshSource } from './sources/source.js';
import { startTrustBundleSync, type TrustBundleSync } from './trust-bundle.js';
import { syncWebhookCaBundle } from './webhook-ca.js';
import { CaRotation } from './ca-rotation.js';

export interface ControlPlaneProcessOptions {
  log: Logger;
  /** CA material: root-cert.pem and root-key.pem, or ca-cert.pem, ca-key.pem (and cert-chain.pem); followed live (a root rotation). */
  caDir: string;
  /** How often the CA folder is re-read without a file event (default 5 s). */
  caPollMs?: number;
  /** Default cluster.local. */
  trustDomain?: string;
  /** The certificate lifetime, and where it was set (for logs); 1h by default. In Kubernetes, certificateTtl in ConfigMap tsmesh-config wins while it is set. */
  certTtl?: { seconds: number; from: string };
  /**
   * Local mode: proxies authenticate with the static tokens of this file, and
   * there is no Kubernetes (no injector, no leader election, nothing written to an API).
   */
  tokenFile?: string;
  /** Discovery from this Mesh file instead of Kubernetes. */
  meshFile?: string;
  /** The API server's credentials; default in-cluster, then $KUBECONFIG. Read only in Kubernetes mode. */
  kubeconfig?: string;
  /** Serve the CA (default true). */
  ca?: boolean;
  /** Serve the discovery stream (default true). */
  discovery?: boolean;
  /** Run the sidecar injector (default true; never in local mode). */
  webhook?: boolean;
  /** The injector's port (default 9443). */
  webhookPort?: number;
  /** The image injected sidecars run (default ghcr.io/tsmesh/tsmesh:<version>). */
  proxyImage?: string;
  /** Listen address (default 0.0.0.0). */
  host?: string;
  /** IP addresses proxies dial the control plane by, for its serving certificate (127.0.0.1 and ::1 always). */
  servingIps?: string[];
  /** CA and discovery TLS port (default 15012; 0 picks one). */
  port?: number;
  /** /metrics, /healthz, /readyz, the dashboard (default 15014; 0 picks one). */
  adminPort?: number;
  /** This replica, as the Lease and Events name it: its pod name in Kubernetes; default the hostname. */
  replica?: string;
  /**
   * The proxies the dashboard scrapes. Default: in Kubernetes, every meshed
   * endpoint and every proxy on this replica's stream, only while the dashboard
   * is read; in local mode none (the proxies' admin ports are not known).
   * Targets given here are scraped from the start (the demo prints its table from them).
   */
  scrapeTargets?: ControlPlaneOptions['scrapeTargets'];
}

export interface ControlPlaneProcess extends RunningControlPlane {
  authority: CertificateAuthority;
  /** The CA folder followed live, and the root rotation (control/ca-rotation.ts). */
  caRotation: CaRotation;
  /** Whether this replica writes to the API now: always in local mode, the leader's in Kubernetes. */
  isLeader(): boolean;
  /** Stops the servers, the source, the writers, and releases the Lease if this replica holds it. */
  close(): Promise<void>;
}

/**
 * What only the leader writes to the API: the trust bundle into every meshed
 * namespace, and the injector's caBundle (re-checked every minute).
 * Every replica serves; one writes, so two never fight over an object.
 */
function leaderWriters(o: { kube: () => KubeConfig; authority: CertificateAuthority; injector: boolean; registry: Registry; log: Logger }) {
  let trustBundleSync: TrustBundleSync | undefined;
  let caBundleTimer: NodeJS.Timeout | undefined;
  let running = false;
  /** The bundle the injector's caBundle was last seen to hold. */
  let caBundleSet: string | undefined;
  const syncCaBundle = (): void => {
    const pem = o.authority.trustBundle.toPem();
    syncWebhookCaBundle(o.kube(), pem, o.log).then(
      () => {
        caBundleSet = pem;
      },
      (e: unknown) =>
      o.log.error('cannot set the injector caBundle; pods will not be injected until it is set', {
        error: (e as Error).message,
        hint: `check that MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} exists (tsmesh install) and the control plane may patch it`,
      }),
    );
  };
  return {
    /** A new trust bundle (root rotation): the ConfigMaps and the caBundle follow at once. */
    bundleChanged(pem: string): void {
      trustBundleSync?.setBundle(pem);
      if (running && o.injector) syncCaBundle();
    },
    /** Why the ConfigMaps or the caBundle do not hold the bundle yet; undefined when they do or another replica writes them. */
    notReady(): string | undefined {
      if (!running) return undefined;
      const why = trustBundleSync?.notReady();
      if (why) return `trust-bundle ConfigMaps: ${why}`;
      if (o.injector && caBundleSet !== o.authority.trustBundle.toPem()) return `the injector's caBundle (MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME}) does not hold the bundle yet`;
      return undefined;
    },
    start(): void {
      running = true;
      trustBundleSync ??= startTrustBundleSync({ kc: o.kube(), log: o.log.child('trust-bundle'), registry: o.registry, bundlePem: o.authority.trustBundle.toPem() });
      if (o.injector && !caBundleTimer) {
        syncCaBundle();
        caBundleTimer = setInterval(syncCaBundle, 60_000);
        caBundleTimer.unref();
      }
    },
    stop(): void {
      running = false;
      trustBundleSync?.close();
      trustBundleSync = undefined;
      clearInterval(caBundleTimer);
      caBundleTimer = undefined;
    },
  };
}

export async function startControlPlaneProcess(opts: ControlPlaneProcessOptions): Promise<ControlPlaneProcess> {
  const { log } = opts;
  const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const material = await readCaMaterial(opts.caDir);
  const authority = new CertificateAuthority({ trustDomain, ...material.current, ...(opts.certTtl ? { ttlSeconds: opts.certTtl.seconds } : {}) });
  const local = opts.tokenFile !== undefined;
  let kubeConfig: KubeConfig | undefined;
  const kube = (): KubeConfig => {
    if (!kubeConfig) {
      kubeConfig = new KubeConfig();
      if (opts.kubeconfig) kubeConfig.loadFromFile(opts.kubeconfig);
      else kubeConfig.loadFromDefault();
    }
    return kubeConfig;
  };
  let authenticator: Authenticator | undefined;
  if (opts.ca ?? true) {
    authenticator = opts.tokenFile ? await TokenFileAuthenticator.fromFile(opts.tokenFile) : new KubernetesAuthenticator(trustDomain, apiServerTokenReviewer(kube()));
  }
  // The injector is for Kubernetes; a local mesh has no API server to call it.
  const webhook = (opts.webhook ?? true) && !local ? { mesh: meshConfig({ trustDomain, ...(opts.proxyImage ? { image: opts.proxyImage } : {}) }), port: opts.webhookPort ?? PORTS.webhook } : undefined;
  const replica = opts.replica ?? hostname();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // A local mesh has one writer; in Kubernetes, the leader.
  let leading = local;
  let meshSource: MeshSource | undefined;
  if (opts.discovery ?? true) {
    if (opts.meshFile) meshSource = new FileMeshSource(opts.meshFile, log.child('mesh-file'));
    else if (local) log.info('discovery off: local mode (a token file) without a mesh file');
    else {
      const source = createKubernetesSource({ kc: kube(), trustDomain, registry, log: log.child('kubernetes'), isWriter: () => leading, instance: replica });
      // Every replica issues, so every replica follows the ConfigMap's certificateTtl.
      followMeshCertificateTtl({ authority, source, defaultFrom: opts.certTtl?.from ?? 'the default', log: log.child('ca') });
      meshSource = source;
    }
  }
  const writers = leaderWriters({ kube, authority, injector: webhook !== undefined, registry, log });
  const caRotation = new CaRotation({
    dir: opts.caDir,
    authority,
    material,
    log: log.child('ca-material'),
    registry,
    writers: () => writers.notReady(),
    ...(opts.caPollMs !== undefined ? { pollMs: opts.caPollMs } : {}),
  });
  caRotation.onBundleChange((pem) => writers.bundleChanged(pem));
  let election: LeaderElection | undefined;
  const stop = async (): Promise<void> => {
    caRotation.close();
    meshSource?.close();
    writers.stop();
    await election?.close();
  };
  let plane: RunningControlPlane;
  try {
    election = local
      ? undefined
      : startLeaderElection({
          kc: kube(),
          namespace: MESH_NAMESPACE,
          identity: replica,
          log: log.child('leader'),
          onStartedLeading: () => {
            leading = true;
            writers.start();
          },
          onStoppedLeading: () => {
            leading = false;
            writers.stop();
          },
        });
    // The dashboard scrapes the meshed pods' proxies (podIP:15020), only while someone reads it: the
    // model's meshed endpoints and the proxies on this plane's stream (a pure client is behind no Service).
    const source = meshSource;
    const scrapeTargets: ControlPlaneOptions['scrapeTargets'] = opts.scrapeTargets ?? (source && !local ? (connected) => meshScrapeTargets(source.current(), connected) : undefined);
    plane = await startControlPlane({
      authority,
      ca: opts.ca ?? true,
      ...(authenticator ? { authenticator } : {}),
      ...(meshSource ? { meshSource } : {}),
      ...(webhook ? { webhook } : {}),
      registry,
      log,
      ...(opts.host ? { host: opts.host } : {}),
      ...(opts.servingIps ? { ipAddresses: opts.servingIps } : {}),
      port: opts.port ?? PORTS.controlPlane,
      adminPort: opts.adminPort ?? PORTS.controlPlaneAdmin,
      ...(scrapeTargets ? { scrapeTargets, scrapeOnDemand: opts.scrapeTargets === undefined } : {}),
      retiredRoots: () => caRotation.retiredRoots(),
      caStatus: () => caRotation.status(),
      // tsmesh tap: in Kubernetes, callers by RBAC and pods at their inbound port; a local mesh has no API
      // server to ask, and its sidecars listen where its mesh file's endpoints say.
      tap: local ? {} : { authorize: kubernetesTapAuthorizer(kube()), proxyPort: PORTS.inbound },
    });
  } catch (e) {
    await stop();
    throw e;
  }
  if (plane.discovery) caRotation.attach(plane.discovery);
  caRotation.start();
  return {
    ...plane,
    authority,
    caRotation,
    isLeader: () => leading,
    async close() {
      await Promise.all([stop(), plane.close()]);
    },
  };
}
