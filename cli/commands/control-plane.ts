// tsmesh control-plane: runs the CA (and discovery and the webhook, as they land).
import { KubeConfig } from '@kubernetes/client-node';
import { loadCaFromDir } from '../../ca/material.js';
import { KubernetesAuthenticator, apiServerTokenReviewer } from '../../ca/authn/kubernetes.js';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import type { Authenticator } from '../../ca/authn/authenticator.js';
import { startControlPlane } from '../../control/plane.js';
import { MESH_NAMESPACE, WEBHOOK_CONFIGURATION_NAME } from '../../contract/names.js';
import { FileMeshSource } from '../../control/sources/file.js';
import { scrapeTargets } from '../../control/observe/targets.js';
import { createKubernetesSource } from '../../control/sources/kubernetes.js';
import { followMeshCertificateTtl } from '../../control/cert-ttl.js';
import { startTrustBundleSync } from '../../control/trust-bundle.js';
import { startLeaderElection } from '../../control/leader.js';
import { hostname } from 'node:os';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { syncWebhookCaBundle } from '../../control/webhook-ca.js';
import type { MeshSource } from '../../control/sources/source.js';
import { meshConfig } from '../../webhook/mesh-config.js';
import { parseDuration } from '../../lib/duration.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { flagOrEnv, parseFlags, required, type Command } from '../command.js';
import { DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { PORTS } from '../../contract/ports.js';

const USAGE = `Usage: tsmesh control-plane --ca-dir DIR [options]

Runs the CA and the discovery stream (15012), the sidecar injector (9443) and
the admin port (15014). Each part can be switched off.

  --ca-dir DIR          CA material (root-cert.pem, root-key.pem or ca-cert.pem, ca-key.pem)  [TSMESH_CA_DIR]
  --trust-domain TD     trust domain (default cluster.local)                               [TSMESH_TRUST_DOMAIN]
  --cert-ttl DURATION   certificate lifetime (default 1h; in Kubernetes,                   [TSMESH_CERT_TTL]
                        certificateTtl in ConfigMap tsmesh-config wins while it is set)
  --token-file FILE     authenticate proxies with static tokens instead of Kubernetes      [TSMESH_TOKEN_FILE]
  --kubeconfig FILE     API server credentials (default: in-cluster, then $KUBECONFIG)
  --host ADDR           listen address (default 0.0.0.0)
  --serving-ip IP       an IP address proxies dial the control plane by (repeatable; 127.0.0.1 and ::1 always)
  --port N              CA and discovery TLS port (default 15012)
  --admin-port N        /metrics, /healthz, /readyz, and in Kubernetes the dashboard at / (default 15014)
  --log-level LEVEL     error, warn, info, debug (default info)                            [TSMESH_LOG_LEVEL]
  --mesh-file FILE      discovery from a local Mesh file instead of Kubernetes             [TSMESH_MESH_FILE]
  --no-ca               do not serve the CA
  --no-discovery        do not serve the discovery stream
  --no-webhook          do not run the sidecar injector (it never runs in local mode, --token-file)
  --webhook-port N      the injector's port (default 9443)
  --proxy-image IMAGE   the image injected sidecars run (default ghcr.io/tsmesh/tsmesh:<version>)`;

function port(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag} ${JSON.stringify(text)} is not a port number (0-65535)`);
  return n;
}

export const controlPlaneCommand: Command = {
  name: 'control-plane',
  summary: 'run the CA (and discovery) for the mesh',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      'ca-dir': { type: 'string' },
      'trust-domain': { type: 'string' },
      'cert-ttl': { type: 'string' },
      'token-file': { type: 'string' },
      kubeconfig: { type: 'string' },
      host: { type: 'string' },
      'serving-ip': { type: 'string', multiple: true },
      port: { type: 'string' },
      'admin-port': { type: 'string' },
      'log-level': { type: 'string' },
      'mesh-file': { type: 'string' },
      'no-ca': { type: 'boolean' },
      'no-discovery': { type: 'boolean' },
      'no-webhook': { type: 'boolean' },
      'webhook-port': { type: 'string' },
      'proxy-image': { type: 'string' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const log = createLogger('control-plane', parseLogLevel(flagOrEnv(values['log-level'], 'TSMESH_LOG_LEVEL', 'info')!));
    const trustDomain = flagOrEnv(values['trust-domain'], 'TSMESH_TRUST_DOMAIN', DEFAULT_TRUST_DOMAIN)!;
    const ttl = flagOrEnv(values['cert-ttl'], 'TSMESH_CERT_TTL');
    const authority = await loadCaFromDir(required(flagOrEnv(values['ca-dir'], 'TSMESH_CA_DIR'), '--ca-dir'), {
      trustDomain,
      ...(ttl ? { ttlSeconds: parseDuration(ttl, '--cert-ttl') / 1000 } : {}),
    });
    const tokenFile = flagOrEnv(values['token-file'], 'TSMESH_TOKEN_FILE');
    const meshFile = flagOrEnv(values['mesh-file'], 'TSMESH_MESH_FILE');
    let kubeConfig: KubeConfig | undefined;
    const kube = (): KubeConfig => {
      if (!kubeConfig) {
        kubeConfig = new KubeConfig();
        if (values.kubeconfig) kubeConfig.loadFromFile(values.kubeconfig);
        else kubeConfig.loadFromDefault();
      }
      return kubeConfig;
    };
    let authenticator: Authenticator | undefined;
    if (!values['no-ca']) {
      authenticator = tokenFile ? await TokenFileAuthenticator.fromFile(tokenFile) : new KubernetesAuthenticator(trustDomain, apiServerTokenReviewer(kube()));
    }
    let meshSource: MeshSource | undefined;
    const local = Boolean(tokenFile);
    let leading = local;
    /** This replica: its pod name in Kubernetes (the downward API sets POD_NAME), else the hostname. */
    const replica = process.env.POD_NAME ?? hostname();
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    if (!values['no-discovery']) {
      if (meshFile) meshSource = new FileMeshSource(meshFile, log.child('mesh-file'));
      else if (local) log.info('discovery off: local mode (--token-file) without --mesh-file');
      else {
        const source = createKubernetesSource({ kc: kube(), trustDomain, registry, log: log.child('kubernetes'), isWriter: () => leading, instance: replica });
        // Every replica issues, so every replica follows the ConfigMap's certificateTtl.
        followMeshCertificateTtl({ authority, source, defaultFrom: ttl ? '--cert-ttl' : 'the default', log: log.child('ca') });
        meshSource = source;
      }
    }
    // In Kubernetes, every meshed namespace holds the roots in ConfigMap tsmesh-trust-bundle.
    // Every replica serves; only the leader writes to the API (policy status, the
    // trust-bundle ConfigMaps, the injector's caBundle). A local mesh has one writer.
    let trustBundleSync: ReturnType<typeof startTrustBundleSync> | undefined;
    let caBundleTimer: NodeJS.Timeout | undefined;
    const startWriting = (): void => {
      trustBundleSync ??= startTrustBundleSync({ kc: kube(), log: log.child('trust-bundle'), registry, bundlePem: authority.trustBundle.toPem() });
      if (webhook && !caBundleTimer) {
        const sync = (): void => {
          syncWebhookCaBundle(kube(), authority.trustBundle.toPem(), log).catch((e: unknown) =>
            log.error('cannot set the injector caBundle; pods will not be injected until it is set', {
              error: (e as Error).message,
              hint: `check that MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} exists (tsmesh install) and the control plane may patch it`,
            }),
          );
        };
        sync();
        caBundleTimer = setInterval(sync, 60_000);
        caBundleTimer.unref();
      }
    };
    const stopWriting = (): void => {
      trustBundleSync?.close();
      trustBundleSync = undefined;
      clearInterval(caBundleTimer);
      caBundleTimer = undefined;
    };
    const election = local
      ? undefined
      : startLeaderElection({
          kc: kube(),
          namespace: MESH_NAMESPACE,
          identity: replica,
          log: log.child('leader'),
          onStartedLeading: () => {
            leading = true;
            startWriting();
          },
          onStoppedLeading: () => {
            leading = false;
            stopWriting();
          },
        });
    // The injector is for Kubernetes; a local mesh (--token-file) has no API server to call it.
    const webhook = values['no-webhook'] || local
      ? undefined
      : {
          mesh: meshConfig({ trustDomain, ...(values['proxy-image'] ? { image: values['proxy-image'] } : {}) }),
          port: port(values['webhook-port'], PORTS.webhook, '--webhook-port'),
        };
    const plane = await startControlPlane({
      authority,
      ca: !values['no-ca'],
      ...(authenticator ? { authenticator } : {}),
      ...(meshSource ? { meshSource } : {}),
      ...(webhook ? { webhook } : {}),
      registry,
      log,
      ...(values.host ? { host: values.host } : {}),
      ...(values['serving-ip'] ? { ipAddresses: values['serving-ip'] } : {}),
      port: port(values.port, PORTS.controlPlane, '--port'),
      adminPort: port(values['admin-port'], PORTS.controlPlaneAdmin, '--admin-port'),
      // The dashboard scrapes the meshed pods' proxies (podIP:15020), only while someone reads it: the
      // model's meshed endpoints and the proxies on this plane's stream (a pure client is behind no Service).
      ...(meshSource && !local ? { scrapeTargets: (connected) => scrapeTargets(meshSource.current(), connected), scrapeOnDemand: true } : {}),
    });
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        log.info('shutting down', { signal });
        meshSource?.close();
        stopWriting();
        void Promise.all([election?.close(), plane.close()]).then(() => resolve());
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
};
