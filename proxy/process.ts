// The proxy process: identity, the config source (the control plane's
// discovery stream, or a file), the sidecar's listeners and its admin server,
// assembled from ProxySettings (proxy/env.ts). `tsmesh proxy` runs it in a pod
// with the settings of its environment; `tsmesh demo` runs one per workload in
// its own process (loopback mode) with settings of its own; tests run it with
// ports 0. What belongs to the OS process alone (signals, the exit code) stays
// in cli/commands/proxy.ts.
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { workloadSpiffeId } from '../contract/spiffe.js';
import { parseDuration } from '../lib/duration.js';
import { scheduleMemoryRelease } from '../lib/file-pages.js';
import type { Logger } from '../lib/log.js';
import { parseAppProbes } from './admin/app-health.js';
import { createSidecarAdmin, sidecarReadiness } from './admin/sidecar-admin.js';
import type { ConfigSource } from './config/source.js';
import { StreamConfigSource } from './config/stream.js';
import type { ProxySettings } from './env.js';
import { createIdentity, type IdentitySettings } from './identity/identity.js';
import type { IdentityManager } from './identity/manager.js';
import { createProxyMetrics } from './metrics.js';
import { LISTEN_BACKLOG, startSidecar, type Sidecar, type SidecarOptions } from './sidecar.js';
import { PROXY_DEFAULTS, PROXY_ENV } from '../contract/env.js';

export interface ProxyProcessOptions {
  log: Logger;
  /** Where the sidecar's ports and its admin port listen (0.0.0.0 in a pod). */
  host?: string;
  /**
   * Where the original destinations come from, and extra explicit outbound
   * ports: SO_ORIGINAL_DST in a pod; the demo on loopback and tests pass their own.
   */
  sidecar?: Pick<SidecarOptions, 'inboundOriginalDestination' | 'outboundOriginalDestination' | 'explicitOutbound' | 'appAddress'>;
  /** The identity's clock, backoff and TLS server name (tests). */
  identityTuning?: IdentitySettings['tuning'];
  /**
   * Give back the memory start-up touched once, every 10 s (lib/file-pages.ts).
   * Only where the OS process is this proxy's own: it acts on the whole process.
   */
  releaseMemory?: boolean;
}

export interface RunningProxy {
  sidecar: Sidecar;
  identity: IdentityManager;
  config: ConfigSource;
  /** spiffe://<trust domain>/ns/<namespace>/sa/<service account>, when the settings name them. */
  spiffeId: string | undefined;
  adminPort: number;
  /** http://HOST:PORT of the admin server, as a client on this machine reaches it. */
  adminUrl: string;
  /** TSMESH_DRAIN_DURATION in milliseconds: what drain() waits by default. */
  drainMs: number;
  /** Why /ready answers 503 (no certificate or no config yet); undefined once ready. */
  notReadyReason(): string | undefined;
  /**
   * Stops accepting, waits up to `graceMs` (default the settings' drain duration)
   * for open connections, then closes the rest, the identity, the config source
   * and the admin server. Resolves once nothing of this proxy is left open.
   */
  drain(graceMs?: number, reason?: Record<string, unknown>): Promise<void>;
  /** drain(0). */
  stop(): Promise<void>;
}

/**
 * Starts the proxy: the sidecar's listeners and the admin server, then the
 * identity (the first certificate request) and the config stream. A bad
 * setting (drain duration, app probes, an unreadable config file) throws
 * before anything listens; a start that fails later leaves nothing open.
 */
export async function startProxy(settings: ProxySettings, opts: ProxyProcessOptions): Promise<RunningProxy> {
  const { log } = opts;
  const host = opts.host ?? '0.0.0.0';
  const drainMs = parseDuration(settings.drainDuration, PROXY_ENV.DRAIN_DURATION);
  const requestBodyTimeoutMs = parseDuration(settings.requestBodyTimeout ?? PROXY_DEFAULTS.REQUEST_BODY_TIMEOUT, PROXY_ENV.REQUEST_BODY_TIMEOUT);
  const responseHeadTimeoutMs = parseDuration(settings.responseHeadTimeout ?? PROXY_DEFAULTS.RESPONSE_HEAD_TIMEOUT, PROXY_ENV.RESPONSE_HEAD_TIMEOUT);
  const appProbes = settings.appProbesJson ? parseAppProbes(settings.appProbesJson) : {};
  const metrics = createProxyMetrics();
  const spiffeId =
    settings.podNamespace && settings.serviceAccount ? workloadSpiffeId(settings.trustDomain, settings.podNamespace, settings.serviceAccount) : undefined;
  const identity = createIdentity({
    controlPlaneAddress: settings.controlPlaneAddress,
    tokenPath: settings.tokenPath,
    trustBundlePath: settings.trustBundlePath,
    ...(spiffeId ? { spiffeId } : {}),
    registry: metrics.registry,
    log: log.child('identity'),
    ...(opts.identityTuning ? { tuning: opts.identityTuning } : {}),
  });
  // The config comes from a file when one is given, else from the control plane's stream.
  // The stream authenticates with the proxy's certificate, known once the sidecar holds one.
  let sidecar: Sidecar | undefined;
  const stream = settings.configFile
    ? undefined
    : new StreamConfigSource({ address: settings.controlPlaneAddress, tls: () => sidecar?.meshTls.clientMaterial(), log: log.child('discovery'), podName: settings.podName });
  // The YAML parser is loaded only for a config file: a proxy on the stream never needs it (5 MB of RSS).
  const config: ConfigSource = stream ?? new (await import('./config/file.js')).FileConfigSource(settings.configFile!, log.child('config'));

  let admin: Server | undefined;
  const closeAdmin = async (): Promise<void> => {
    if (!admin) return;
    admin.closeAllConnections();
    if (admin.listening) await new Promise((resolve) => admin!.close(resolve));
  };
  let adminPort: number;
  try {
    sidecar = await startSidecar({
      identity,
      config,
      log,
      metrics,
      host,
      outboundPort: settings.outboundPort,
      inboundPort: settings.inboundPort,
      reservedPorts: [settings.adminPort],
      opaquePorts: settings.opaquePorts,
      telemetry: { podName: settings.podName },
      requestBodyTimeoutMs,
      responseHeadTimeoutMs,
      h2Frames: settings.h2Frames === true,
      ...opts.sidecar,
    });
    admin = createSidecarAdmin(sidecar, identity, { appProbes, log: log.child('admin') });
    admin.listen({ port: settings.adminPort, host, backlog: LISTEN_BACKLOG });
    await once(admin, 'listening');
    adminPort = (admin.address() as AddressInfo).port;
  } catch (e) {
    identity.stop();
    config.close();
    await sidecar?.drain(0);
    await closeAdmin();
    throw e;
  }
  const running = sidecar;
  void identity.start();
  stream?.start();
  // A renewed certificate is acknowledged at once: a root rotation waits for every proxy to hold one of the new root.
  const stopReack = stream ? identity.onChange(() => stream.acknowledge()) : () => undefined;
  // Start-up maps much of the node binary that the proxy then never touches again, and malloc keeps
  // what V8's threads free (lib/file-pages.ts). A release cost 3-5 ms of CPU and malloc_trim under
  // 0.5 ms in a proxy pair at steady state, and what it still used came back in a few hundred minor
  // faults: every 10 s, well under 0.1% of a core, and the pages that the optimizing compiler or a
  // config push touched once are not held for long.
  const stopRelease = opts.releaseMemory ? scheduleMemoryRelease({ firstMs: 10_000, everyMs: 10_000, log: log.child('memory') }) : () => undefined;
  log.info('proxy started', { outbound: running.outboundPort, inbound: running.inboundPort, admin: adminPort, spiffeId });

  const localHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  let drained: Promise<void> | undefined;
  const drain = (graceMs = drainMs, reason: Record<string, unknown> = {}): Promise<void> =>
    (drained ??= (async () => {
      log.info('draining', { ...reason, graceMs });
      stopRelease();
      stopReack();
      await running.drain(graceMs);
      identity.stop();
      config.close();
      await closeAdmin();
    })());
  return {
    sidecar: running,
    identity,
    config,
    spiffeId,
    adminPort,
    adminUrl: `http://${localHost.includes(':') ? `[${localHost}]` : localHost}:${adminPort}`,
    drainMs,
    notReadyReason: sidecarReadiness(running, identity),
    drain,
    stop: () => drain(0),
  };
}
