// `tsmesh control-plane`: the CA (and, as they are built, discovery and the
// webhook) behind one TLS port, 15012, plus the admin port 15014.
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
import { workloadSpiffeId } from '../ca/spiffe.js';
import type { Logger } from '../lib/log.js';
import { createAdminServer } from './admin.js';

export const CONTROL_PLANE_NAMESPACE = 'tsmesh-system';
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'tsmesh-control-plane';
export const CONTROL_PLANE_SERVICE = 'tsmesh-control-plane';

export interface ControlPlaneOptions {
  authority: CertificateAuthority;
  authenticator: Authenticator;
  log: Logger;
  host?: string;
  /** 15012 by default; 0 picks a free port. */
  port?: number;
  adminPort?: number;
  /** Extra DNS names for the serving certificate. */
  dnsNames?: string[];
  /** Extra IP addresses for the serving certificate (127.0.0.1 and ::1 are always in it). */
  ipAddresses?: string[];
}

export interface RunningControlPlane {
  caPort: number;
  adminPort: number;
  registry: Registry;
  close(): Promise<void>;
}

/** The names the control plane's serving certificate answers to. */
export function servingNames(trustDomain: string, extra: readonly string[] = []): string[] {
  const svc = `${CONTROL_PLANE_SERVICE}.${CONTROL_PLANE_NAMESPACE}`;
  return [...new Set([CONTROL_PLANE_SERVICE, svc, `${svc}.svc`, `${svc}.svc.${trustDomain}`, 'localhost', ...extra])];
}

function issueServingCertificate(authority: CertificateAuthority, dnsNames: string[], ipAddresses: string[]) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = authority.issue(publicKey.export({ type: 'spki', format: 'der' }), {
    spiffeId: workloadSpiffeId(authority.trustDomain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT),
    dnsNames,
    ipAddresses,
  });
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, issued };
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<RunningControlPlane> {
  const { authority, log } = opts;
  const host = opts.host ?? '0.0.0.0';
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const app = express();
  app.disable('x-powered-by');
  app.use(caRouter({ authority, authenticator: opts.authenticator, metrics: createCaMetrics(registry), log: log.child('ca') }));

  const names = servingNames(authority.trustDomain, opts.dnsNames);
  const ips = [...new Set(['127.0.0.1', '::1', ...(opts.ipAddresses ?? [])])];
  let serving = issueServingCertificate(authority, names, ips);
  const server: HttpsServer = createHttpsServer({ key: serving.key, cert: serving.cert, minVersion: 'TLSv1.2' }, app);
  // Re-issue the serving certificate at half its life; setSecureContext keeps open connections.
  let rotateTimer: NodeJS.Timeout;
  const scheduleRotation = (): void => {
    const life = serving.issued.notAfter.getTime() - Date.now();
    rotateTimer = setTimeout(() => {
      try {
        serving = issueServingCertificate(authority, names, ips);
        server.setSecureContext({ key: serving.key, cert: serving.cert, minVersion: 'TLSv1.2' });
        log.info('rotated serving certificate', { expiresAt: serving.issued.notAfter.toISOString() });
      } catch (e) {
        log.error('serving certificate rotation failed; retrying in 30s', { error: (e as Error).message });
      }
      scheduleRotation();
    }, Math.max(30_000, life / 2));
    rotateTimer.unref();
  };
  scheduleRotation();

  const admin: Server = createAdminServer({ registry, readiness: () => undefined });
  server.listen(opts.port ?? 15012, host);
  admin.listen(opts.adminPort ?? 15014, host);
  await Promise.all([once(server, 'listening'), once(admin, 'listening')]);
  const caPort = (server.address() as AddressInfo).port;
  const adminPort = (admin.address() as AddressInfo).port;
  log.info('control plane listening', { caPort, adminPort, trustDomain: authority.trustDomain });

  return {
    caPort,
    adminPort,
    registry,
    async close() {
      clearTimeout(rotateTimer);
      server.closeAllConnections();
      admin.closeAllConnections();
      await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => admin.close(r))]);
    },
  };
}
