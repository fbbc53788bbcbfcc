// `tsmesh demo`: a whole mesh on this machine, no cluster. The control plane
// runs in local mode (a token file, a mesh file); every workload has its own
// sidecar with its own certificate from the CA and its config from the
// discovery stream. Here, on loopback: each app reaches its sidecar on an
// explicit port per upstream (what iptables does in a pod).
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenFileAuthenticator } from '../ca/authn/token-file.js';
import { CA_FILES, loadCaFromDir } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { workloadSpiffeId } from '../ca/spiffe.js';
import { startControlPlane, type RunningControlPlane } from '../control/plane.js';
import { FileMeshSource } from '../control/sources/file.js';
import type { Logger } from '../lib/log.js';
import { createSidecarAdmin } from '../proxy/admin/sidecar-admin.js';
import { StreamConfigSource } from '../proxy/config/stream.js';
import { createIdentity, type IdentityManager } from '../proxy/identity/index.js';
import { createProxyMetrics } from '../proxy/metrics.js';
import { startSidecar, type Sidecar } from '../proxy/sidecar.js';
import { createApp, startLoad } from './apps.js';
import { EdgeWatcher, formatEdges } from './stats.js';
import { CLUSTER_IPS, NAMESPACE, SERVICE_PORT, WORKLOADS, meshFile } from './topology.js';

const TRUST_DOMAIN = 'cluster.local';
const HOST = '127.0.0.1';

export interface DemoOptions {
  log: Logger;
  /** Requests per second of the traffic generator. */
  rps?: number;
  /** The control plane's admin port (the dashboard at /, /metrics); 0 picks one. */
  adminPort?: number;
}

export interface RunningDemo {
  controlPlane: RunningControlPlane;
  /** Admin port (15020 in a pod) of each workload's sidecar. */
  adminPorts: ReadonlyMap<string, number>;
  sidecars: ReadonlyMap<string, Sidecar>;
  edges: EdgeWatcher;
  /** The traffic generator, started once every sidecar holds a certificate and a config. */
  load: ReturnType<typeof startLoad>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, HOST);
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function listen(server: Server, port = 0): Promise<number> {
  server.listen(port, HOST);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

export async function startDemo(opts: DemoOptions): Promise<RunningDemo> {
  const { log } = opts;
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-demo-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stop = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c();
  };
  try {
    const root = await createRootCa(TRUST_DOMAIN);
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    const tokens = new Map(WORKLOADS.map((w) => [w.name, randomBytes(24).toString('hex')]));
    writeFileSync(
      join(dir, 'tokens.yaml'),
      `tokens:\n${WORKLOADS.map((w) => `  - token: ${tokens.get(w.name)}\n    spiffeId: ${workloadSpiffeId(TRUST_DOMAIN, NAMESPACE, w.name)}`).join('\n')}\n`,
    );
    for (const w of WORKLOADS) writeFileSync(join(dir, `${w.name}.token`), tokens.get(w.name)!, { mode: 0o600 });

    // Each workload's inbound port must be known before the mesh file is written.
    const inboundPorts = new Map<string, number>();
    for (const w of WORKLOADS) inboundPorts.set(w.name, await freePort());
    writeFileSync(join(dir, 'mesh.yaml'), meshFile(Object.fromEntries(WORKLOADS.map((w) => [w.name, { address: HOST, port: inboundPorts.get(w.name)! }]))));

    const adminPorts = new Map<string, number>();
    const authority = await loadCaFromDir(dir, { trustDomain: TRUST_DOMAIN });
    const meshSource = new FileMeshSource(join(dir, 'mesh.yaml'), log.child('mesh-file'));
    cleanups.push(() => meshSource.close());
    const controlPlane = await startControlPlane({
      authority,
      authenticator: await TokenFileAuthenticator.fromFile(join(dir, 'tokens.yaml')),
      meshSource,
      log: log.child('control-plane'),
      host: HOST,
      port: 0,
      adminPort: opts.adminPort ?? 0,
      // The dashboard scrapes each sidecar's admin port, as it would each pod's 15020.
      scrapeTargets: () => [...adminPorts].map(([workload, port]) => ({ workload, namespace: NAMESPACE, url: `http://${HOST}:${port}/metrics` })),
    });
    cleanups.push(() => controlPlane.close());

    const sidecars = new Map<string, Sidecar>();
    const identities: IdentityManager[] = [];
    const upstreamUrls = new Map<string, Record<string, string>>();
    for (const w of WORKLOADS) {
      const appPort = await freePort();
      const metrics = createProxyMetrics();
      const wlog = log.child(w.name);
      const identity = createIdentity({
        controlPlaneAddress: `${HOST}:${controlPlane.caPort}`,
        tokenPath: join(dir, `${w.name}.token`),
        trustBundlePath: join(dir, CA_FILES.rootCert),
        spiffeId: workloadSpiffeId(TRUST_DOMAIN, NAMESPACE, w.name),
        registry: metrics.registry,
        log: wlog.child('identity'),
      });
      identities.push(identity);
      const tls: { get: () => ReturnType<Sidecar['meshTls']['clientMaterial']> } = { get: () => undefined };
      const config = new StreamConfigSource({ address: `${HOST}:${controlPlane.caPort}`, tls: () => tls.get(), log: wlog.child('discovery') });
      const sidecar = await startSidecar({
        identity,
        config,
        log: wlog,
        metrics,
        host: HOST,
        outboundPort: 0,
        inboundPort: inboundPorts.get(w.name)!,
        inboundOriginalDestination: () => ({ address: HOST, port: appPort, family: 'IPv4' }),
        outboundOriginalDestination: () => {
          throw new Error('loopback mode: apps call their sidecar on an explicit port per service');
        },
        explicitOutbound: w.calls.map((svc) => ({ port: 0, destination: { address: CLUSTER_IPS[svc]!, port: SERVICE_PORT, family: 'IPv4' as const } })),
      });
      tls.get = () => sidecar.meshTls.clientMaterial();
      upstreamUrls.set(w.name, Object.fromEntries(w.calls.map((svc, i) => [svc, `http://${HOST}:${sidecar.explicitOutboundPorts[i]}`])));
      const admin = createSidecarAdmin(sidecar, identity, { log: wlog.child('admin') });
      adminPorts.set(w.name, await listen(admin));
      const app = createApp(w.name, upstreamUrls.get(w.name)!);
      await listen(app, appPort);
      void identity.start();
      config.start();
      sidecars.set(w.name, sidecar);
      cleanups.push(async () => {
        identity.stop();
        config.close();
        await sidecar.drain(1000);
        admin.closeAllConnections();
        admin.close();
        app.closeAllConnections();
        app.close();
      });
    }

    const deadline = Date.now() + 60_000;
    for (;;) {
      const waiting = [...sidecars].filter(([, s]) => !s.meshTls.ready || !s.config()).map(([name]) => name);
      if (waiting.length === 0) break;
      if (Date.now() > deadline) throw new Error(`sidecars not ready after 60 s: ${waiting.join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const load = startLoad(`${upstreamUrls.get('loadgen')!.web}/catalog`, opts.rps ?? 20);
    cleanups.push(() => load.stop());
    const edges = new EdgeWatcher(new Map([...sidecars].map(([name, s]) => [name, s.metrics.registry])));
    return { controlPlane, adminPorts, sidecars, edges, load, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export { formatEdges };
