// The webhook as the control plane runs it: the pod injector behind POST
// /inject, served over HTTPS on 9443.
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.js';
import { podInjector } from './injector.js';
import type { MeshConfig } from './mesh-config.js';
import { createWebhookMetrics } from './metrics.js';
import { admissionRouter } from './server.js';
import { PORTS } from '../contract/ports.js';

export const WEBHOOK_PORT = PORTS.webhook;
export const WEBHOOK_PATH = '/inject';

export interface WebhookAppOptions {
  readonly mesh: MeshConfig;
  /** tsmesh_webhook_* metrics are registered here (the control plane's admin registry). */
  readonly registry: Registry;
  readonly log: Logger;
  /** Recorded in tsmesh.io/status; defaults to this package's version. */
  readonly version?: string;
  readonly maxBodyBytes?: number;
}

/** The express app: POST /inject, and GET /healthz for a quick check with curl. */
export function createWebhookApp(opts: WebhookAppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(
    admissionRouter({
      path: WEBHOOK_PATH,
      handler: podInjector({ mesh: opts.mesh, ...(opts.version === undefined ? {} : { version: opts.version }) }),
      metrics: createWebhookMetrics(opts.registry),
      log: opts.log,
      ...(opts.maxBodyBytes === undefined ? {} : { maxBodyBytes: opts.maxBodyBytes }),
    }),
  );
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  return app;
}

export interface TlsMaterial {
  /** PEM private key. */
  readonly key: string;
  /** PEM certificate chain, leaf first. */
  readonly cert: string;
}

export interface WebhookServerOptions extends WebhookAppOptions {
  readonly tls: TlsMaterial;
  /** Default 0.0.0.0. */
  readonly host?: string;
  /** Default 9443; 0 picks a free port. */
  readonly port?: number;
}

export interface RunningWebhook {
  readonly port: number;
  readonly server: Server;
  /** Swaps the serving certificate; open connections keep theirs. */
  setTls(tls: TlsMaterial): void;
  close(): Promise<void>;
}

export async function startWebhookServer(opts: WebhookServerOptions): Promise<RunningWebhook> {
  const tlsOptions = (tls: TlsMaterial) => ({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' as const });
  const server = createServer(tlsOptions(opts.tls), createWebhookApp(opts));
  server.listen(opts.port ?? WEBHOOK_PORT, opts.host ?? '0.0.0.0');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  opts.log.info('webhook listening', { port, path: WEBHOOK_PATH });
  return {
    port,
    server,
    setTls: (tls) => server.setSecureContext(tlsOptions(tls)),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
