// tsmesh control-plane: the CA and discovery stream, the sidecar injector and
// the admin port, assembled by control/process.ts; here: flags, signals, exit code.
import { startControlPlaneProcess } from '../../control/process.js';
import { CONTROL_PLANE_ENV as ENV } from '../../contract/env.js';
import { PORTS } from '../../contract/ports.js';
import { DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { parseDuration } from '../../lib/duration.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { flagOrEnv, parseFlags, required, type Command } from '../command.js';

const USAGE = `Usage: tsmesh control-plane --ca-dir DIR [options]

Runs the CA and the discovery stream (15012), the sidecar injector (9443) and
the admin port (15014). Each part can be switched off.

  --ca-dir DIR          CA material (root-cert.pem, root-key.pem or ca-cert.pem, ca-key.pem)  [${ENV.CA_DIR}]
  --trust-domain TD     trust domain (default cluster.local)                               [${ENV.TRUST_DOMAIN}]
  --cert-ttl DURATION   certificate lifetime (default 1h; in Kubernetes,                   [${ENV.CERT_TTL}]
                        certificateTtl in ConfigMap tsmesh-config wins while it is set)
  --token-file FILE     authenticate proxies with static tokens instead of Kubernetes      [${ENV.TOKEN_FILE}]
  --kubeconfig FILE     API server credentials (default: in-cluster, then $KUBECONFIG)
  --host ADDR           listen address (default 0.0.0.0)
  --serving-ip IP       an IP address proxies dial the control plane by (repeatable; 127.0.0.1 and ::1 always)
  --port N              CA and discovery TLS port (default 15012)
  --admin-port N        /metrics, /healthz, /readyz, and in Kubernetes the dashboard at / (default 15014)
  --log-level LEVEL     error, warn, info, debug (default info)                            [${ENV.LOG_LEVEL}]
  --mesh-file FILE      discovery from a local Mesh file instead of Kubernetes             [${ENV.MESH_FILE}]
  --no-ca               do not serve the CA
  --no-discovery        do not serve the discovery stream
  --no-webhook          do not run the sidecar injector (it never runs in local mode, --token-file)
  --no-scrape           the dashboard scrapes no proxy (where the meshed pods' addresses are not
                        reachable from the control plane, or Prometheus alone is to scrape them)
  --webhook-port N      the injector's port (default 9443)
  --proxy-image IMAGE   the image injected sidecars run (default ghcr.io/tsmesh/tsmesh:<version>)`;

const string = { type: 'string' } as const;
const FLAGS = {
  'ca-dir': string, 'trust-domain': string, 'cert-ttl': string, 'token-file': string, kubeconfig: string, 'log-level': string, 'mesh-file': string,
  host: string, 'serving-ip': { type: 'string', multiple: true }, port: string, 'admin-port': string, 'webhook-port': string, 'proxy-image': string,
  'no-ca': { type: 'boolean' }, 'no-discovery': { type: 'boolean' }, 'no-webhook': { type: 'boolean' }, 'no-scrape': { type: 'boolean' },
} as const;

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
    const { values } = parseFlags(argv, FLAGS);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const log = createLogger('control-plane', parseLogLevel(flagOrEnv(values['log-level'], ENV.LOG_LEVEL, 'info')!));
    const ttl = flagOrEnv(values['cert-ttl'], ENV.CERT_TTL);
    const tokenFile = flagOrEnv(values['token-file'], ENV.TOKEN_FILE);
    const meshFile = flagOrEnv(values['mesh-file'], ENV.MESH_FILE);
    const plane = await startControlPlaneProcess({
      log,
      caDir: required(flagOrEnv(values['ca-dir'], ENV.CA_DIR), '--ca-dir'),
      trustDomain: flagOrEnv(values['trust-domain'], ENV.TRUST_DOMAIN, DEFAULT_TRUST_DOMAIN)!,
      ...(ttl ? { certTtl: { seconds: parseDuration(ttl, '--cert-ttl') / 1000, from: '--cert-ttl' } } : {}),
      ...(tokenFile ? { tokenFile } : {}),
      ...(meshFile ? { meshFile } : {}),
      ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
      ca: !values['no-ca'],
      discovery: !values['no-discovery'],
      webhook: !values['no-webhook'],
      ...(values['no-scrape'] ? { scrapeTargets: () => [] } : {}),
      webhookPort: port(values['webhook-port'], PORTS.webhook, '--webhook-port'),
      ...(values['proxy-image'] ? { proxyImage: values['proxy-image'] } : {}),
      ...(values.host ? { host: values.host } : {}),
      ...(values['serving-ip'] ? { servingIps: values['serving-ip'] } : {}),
      port: port(values.port, PORTS.controlPlane, '--port'),
      adminPort: port(values['admin-port'], PORTS.controlPlaneAdmin, '--admin-port'),
      // This replica: its pod name in Kubernetes (the downward API sets POD_NAME), else the hostname.
      ...(process.env.POD_NAME ? { replica: process.env.POD_NAME } : {}),
    });
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    log.info('shutting down', { signal });
    await plane.close();
    return 0;
  },
};
