// The proxy's identity: the wiring from the proxy's settings (proxy/env.ts)
// to a running IdentityManager.
import { readFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import { TrustBundle } from '../../ca/trust-bundle.js';
import type { Logger } from '../../lib/log.js';
import { createCaClient } from './ca-client.js';
import { IdentityError } from './errors.js';
import { IdentityManager, type IdentityManagerOptions } from './manager.js';
import { systemScheduler } from '../../lib/scheduler.js';

export interface IdentitySettings {
  /** TSMESH_CONTROL_PLANE_ADDRESS. */
  controlPlaneAddress: string;
  /** TSMESH_TOKEN_PATH. */
  tokenPath: string;
  /** TSMESH_TRUST_BUNDLE_PATH. */
  trustBundlePath: string;
  /** spiffe://<TSMESH_TRUST_DOMAIN>/ns/<TSMESH_POD_NAMESPACE>/sa/<TSMESH_SERVICE_ACCOUNT>, when known. */
  spiffeId?: string;
  registry: Registry;
  log: Logger;
  /** Overrides for tests (virtual time, fast backoff, a fixed TLS server name). */
  tuning?: Pick<IdentityManagerOptions, 'scheduler' | 'random' | 'backoff' | 'rotation' | 'renewNowSpreadMs'> & { servername?: string; timeoutMs?: number };
}

/**
 * An IdentityManager that talks to the control plane's CA. The CA's TLS
 * certificate is verified against the trust bundle file (read at every
 * request, as kubelet updates the ConfigMap) together with the roots of the
 * CA's latest answer, so a root added since the pod started is trusted too.
 * Renewals present the certificate in force, should the CA ask for it.
 * Call start() on it.
 */
export function createIdentity(settings: IdentitySettings): IdentityManager {
  const { tuning = {} } = settings;
  const clock = tuning.scheduler ?? systemScheduler;
  const trustAnchors = async (): Promise<string> => {
    const fromFile = await readFile(settings.trustBundlePath, 'utf8').catch(() => '');
    const fromCa = manager.current()?.trustBundlePem ?? '';
    if (!fromFile.includes('-----BEGIN CERTIFICATE-----') && fromCa === '')
      throw new IdentityError(
        'trust-bundle-unreadable',
        `no root certificate to verify the CA with: ${settings.trustBundlePath} is missing or holds no PEM certificate; mount the ConfigMap tsmesh-trust-bundle there`,
      );
    try {
      return new TrustBundle([fromFile, fromCa]).toPem();
    } catch {
      // A bad entry in the file must not hide the good roots: let TLS read what it can.
      return fromFile + fromCa;
    }
  };
  const requestCertificate = createCaClient({
    address: settings.controlPlaneAddress,
    tokenPath: settings.tokenPath,
    trustAnchors,
    clientCertificate: () => {
      const creds = manager.current();
      return creds && creds.notAfter.getTime() > clock.now() ? { key: creds.keyPem, cert: creds.certChainPem } : undefined;
    },
    ...(tuning.servername === undefined ? {} : { servername: tuning.servername }),
    ...(tuning.timeoutMs === undefined ? {} : { timeoutMs: tuning.timeoutMs }),
  });
  const { servername: _s, timeoutMs: _t, ...managerTuning } = tuning;
  const manager: IdentityManager = new IdentityManager({
    requestCertificate,
    registry: settings.registry,
    log: settings.log,
    ...(settings.spiffeId === undefined ? {} : { spiffeId: settings.spiffeId }),
    ...managerTuning,
  });
  return manager;
}
