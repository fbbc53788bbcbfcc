// tsmesh proxy: the sidecar. Settings come from TSMESH_* variables (set by the
// webhook; see proxy/env.ts); a few flags override them for standalone use.
import { createSidecarAdmin } from '../../proxy/admin/sidecar-admin.js';
import { parseAppProbes } from '../../proxy/admin/app-health.js';
import { StreamConfigSource } from '../../proxy/config/stream.js';
import { readProxySettings } from '../../proxy/env.js';
import { PROXY_ENV } from '../../contract/env.js';
import { createIdentity } from '../../proxy/identity/identity.js';
import { createProxyMetrics } from '../../proxy/metrics.js';
import { LISTEN_BACKLOG, startSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import { parseDuration } from '../../lib/duration.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { parseFlags, type Command } from '../command.js';
import { once } from 'node:events';
import { scheduleMemoryRelease } from '../../lib/file-pages.js';

const USAGE = `Usage: tsmesh proxy [--config-file FILE]

Without --config-file the proxy runs on the control plane's discovery stream
(${PROXY_ENV.CONTROL_PLANE_ADDRESS}).

Runs the sidecar: outbound capture on ${PROXY_ENV.OUTBOUND_PORT} (15001), inbound on
${PROXY_ENV.INBOUND_PORT} (15006), admin on ${PROXY_ENV.ADMIN_PORT} (15020). Every setting is a
TSMESH_* variable (see proxy/env.ts); the webhook sets them in meshed pods.

  --config-file FILE   run on a ProxyConfig file (YAML or JSON), re-read on change  [${PROXY_ENV.CONFIG_FILE}]`;

export const proxyCommand: Command = {
  name: 'proxy',
  summary: 'run the sidecar proxy',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { 'config-file': { type: 'string' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const settings = readProxySettings();
    const log = createLogger('proxy', parseLogLevel(settings.logLevel));
    const configFile = values['config-file'] ?? settings.configFile;
    const drainMs = parseDuration(settings.drainDuration, PROXY_ENV.DRAIN_DURATION);
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
    });
    // The config comes from a file when one is given, else from the control plane's stream.
    // The stream authenticates with the proxy's certificate, known once the sidecar holds one.
    const streamTls: { get: () => ReturnType<Sidecar['meshTls']['clientMaterial']> } = { get: () => undefined };
    const stream = configFile ? undefined : new StreamConfigSource({ address: settings.controlPlaneAddress, tls: () => streamTls.get(), log: log.child('discovery') });
    // The YAML parser is loaded only for a config file: a proxy on the stream never needs it (5 MB of RSS).
    const config = stream ?? new (await import('../../proxy/config/file.js')).FileConfigSource(configFile!, log.child('config'));
    const sidecar = await startSidecar({
      identity,
      config,
      log,
      metrics,
      outboundPort: settings.outboundPort,
      inboundPort: settings.inboundPort,
      reservedPorts: [settings.adminPort],
    });
    const admin = createSidecarAdmin(sidecar, identity, { appProbes, log: log.child('admin') });
    admin.listen({ port: settings.adminPort, host: '0.0.0.0', backlog: LISTEN_BACKLOG });
    await once(admin, 'listening');
    streamTls.get = () => sidecar.meshTls.clientMaterial();
    void identity.start();
    stream?.start();
    // Start-up maps much of the node binary that the proxy then never touches again, and malloc keeps
    // what V8's threads free (lib/file-pages.ts). A release cost 3-5 ms of CPU and malloc_trim under
    // 0.5 ms in a proxy pair at steady state, and what it still used came back in a few hundred minor
    // faults: every 10 s, well under 0.1% of a core, and the pages that the optimizing compiler or a
    // config push touched once are not held for long.
    const stopRelease = scheduleMemoryRelease({ firstMs: 10_000, everyMs: 10_000, log: log.child('memory') });
    log.info('proxy started', { outbound: sidecar.outboundPort, inbound: sidecar.inboundPort, admin: settings.adminPort, spiffeId });

    const signal = await new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    log.info('draining', { signal, graceMs: drainMs });
    stopRelease();
    await sidecar.drain(drainMs);
    identity.stop();
    config.close();
    admin.close();
    admin.closeAllConnections();
    return 0;
  },
};
