// The admin server of a running sidecar: ready once it holds a certificate
// and a config; /config is the config in force.
import type { Server } from 'node:http';
import type { Logger } from '../../lib/log.js';
import type { AppProbes } from '../../contract/env.js';
import type { Sidecar } from '../sidecar.js';
import { combineReadiness, createAdminServer } from './server.js';

/** Why the sidecar is not ready (no certificate, no config yet); undefined once it is. */
export function sidecarReadiness(sidecar: Pick<Sidecar, 'config'>, identity: { notReadyReason(): string | undefined }): () => string | undefined {
  return combineReadiness(
    () => identity.notReadyReason(),
    () => (sidecar.config() ? undefined : 'no config yet'),
  );
}

export function createSidecarAdmin(sidecar: Sidecar, identity: { notReadyReason(): string | undefined }, opts: { log: Logger; appProbes?: AppProbes }): Server {
  return createAdminServer({
    registry: sidecar.metrics.registry,
    readiness: sidecarReadiness(sidecar, identity),
    config: () => sidecar.config(),
    refused: sidecar.metrics.connectionsRefused,
    ...(opts.appProbes ? { appProbes: opts.appProbes } : {}),
    log: opts.log,
  });
}
