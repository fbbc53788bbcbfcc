// `tsmesh demo`: a whole mesh on this machine, no cluster. The control plane
// runs in local mode (a token file, a mesh file); every workload has its own
// sidecar with its own certificate from the CA and its config from the
// discovery stream. As root, each workload is a pod in a network namespace of
// its own (demo/netns.ts); otherwise on loopback: each app reaches its
// sidecar on an explicit port per upstream (what iptables does in a pod).
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CA_FILES } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { workloadSpiffeId, DEFAULT_TRUST_DOMAIN } from '../contract/spiffe.js';
import type { RunningControlPlane } from '../control/plane.js';
import { startControlPlaneProcess } from '../control/process.js';
import type { Logger } from '../lib/log.js';
import { freePort } from '../lib/ports.js';
import { readProxySettings, type ProxySettings } from '../proxy/env.js';
import { startProxy, type RunningProxy } from '../proxy/process.js';
import { createApp, startLoad } from './apps.js';
import { APP_PORT, chooseDemoMode, DemoNetwork, PROXY_USER, startNetnsWorkloads, type DemoMode, type DemoWorkloads } from './netns.js';
import { startPrometheus, type RunningPrometheus } from './prometheus.js';
import { CLUSTER_IPS, NAMESPACE, SERVICE_PORT, WORKLOADS, meshFile } from './topology.js';
import { PORTS } from '../contract/ports.js';

const TRUST_DOMAIN = DEFAULT_TRUST_DOMAIN;
const HOST = '127.0.0.1';

export interface DemoOptions {
  log: Logger;
  /** Requests per second of the traffic generator. */
  rps?: number;
  /** The control plane's admin port (the dashboard at /, /metrics); 0 picks one (15014 in netns mode). */
  adminPort?: number;
  /** netns: a network namespace per workload (root); loopback: explicit ports; auto (default): netns where it can. */
  mode?: DemoMode | 'auto';
  /** Also run Prometheus scraping every sidecar and the control plane. */
  prometheus?: boolean;
  /** The Prometheus program (default Debian's /usr/bin/prometheus). */
  prometheusBinary?: string;
}

export interface RunningDemo {
  mode: DemoMode;
  controlPlane: RunningControlPlane;
  /** Where the control plane listens (the bridge's host address in netns mode). */
  controlPlaneHost: string;
  /** Base URL of each workload's sidecar admin server (pod IP:15020 in netns mode). */
  adminUrls: ReadonlyMap<string, string>;
  /** The traffic generator, started once every sidecar holds a certificate and a config. */
  load: DemoWorkloads['load'];
  prometheus: RunningPrometheus | undefined;
  /** The pods' network (netns mode). */
  network: DemoNetwork | undefined;
  stop(): Promise<void>;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, HOST);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

export async function startDemo(opts: DemoOptions): Promise<RunningDemo> {
  const { log } = opts;
  const mode = opts.mode === 'netns' || opts.mode === 'loopback' ? opts.mode : (await chooseDemoMode()).mode;
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-demo-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  // Each cleanup runs even when one before it fails; the first failure is thrown after all have run.
  const stop = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve().then(c).catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw errors[0];
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

    if (mode === 'netns') await DemoNetwork.removeAbandoned((line) => log.warn(line));
    const net = mode === 'netns' ? await DemoNetwork.create(WORKLOADS.map((w) => w.name)) : undefined;
    if (net) {
      cleanups.push(() => net.destroy());
      // The sidecars run as uid 1337: they read their token and the trust bundle, nothing else.
      chmodSync(dir, 0o755);
      for (const w of WORKLOADS) chownSync(join(dir, `${w.name}.token`), PROXY_USER.uid!, PROXY_USER.gid!);
    }
    const host = net?.hostAddress ?? HOST;

    // Each workload's inbound port must be known before the mesh file is written.
    const endpoints = new Map<string, { address: string; port: number }>();
    for (const w of WORKLOADS) endpoints.set(w.name, net ? { address: net.ip(w.name), port: APP_PORT } : { address: HOST, port: await freePort() });
    writeFileSync(join(dir, 'mesh.yaml'), meshFile(Object.fromEntries(endpoints)));

    const adminUrls = new Map<string, string>();
    // The control plane process as `tsmesh control-plane --token-file --mesh-file` runs it (local mode).
    const controlPlane = await startControlPlaneProcess({
      log: log.child('control-plane'),
      caDir: dir,
      trustDomain: TRUST_DOMAIN,
      tokenFile: join(dir, 'tokens.yaml'),
      meshFile: join(dir, 'mesh.yaml'),
      host,
      servingIps: [host],
      port: net ? PORTS.controlPlane : 0,
      adminPort: opts.adminPort ?? (net ? PORTS.controlPlaneAdmin : 0),
      // The dashboard scrapes each sidecar's admin port, as it would each pod's 15020.
      scrapeTargets: () => [...adminUrls].map(([workload, url]) => ({ workload, namespace: NAMESPACE, url: `${url}/metrics` })),
    });
    cleanups.push(() => controlPlane.close());

    const caAddress = `${host}:${controlPlane.caPort}`;
    const rps = opts.rps ?? 20;
    const workloads = net
      ? await startNetnsWorkloads(net, { caAddress, dir, trustDomain: TRUST_DOMAIN, rps, logLevel: 'warn' }).catch((e: Error) => {
          throw new Error(`${e.message}\n${net.logs()}`, { cause: e });
        })
      : await startLoopbackWorkloads({ caAddress, dir, log, rps, endpoints, cleanups });
    cleanups.push(() => workloads.load.stop());
    for (const [workload, url] of workloads.adminUrls) adminUrls.set(workload, url);
    const { load } = workloads;

    let prometheus: RunningPrometheus | undefined;
    if (opts.prometheus) {
      prometheus = await startPrometheus([
        { job: 'tsmesh-proxy', targets: [...adminUrls].map(([workload, url]) => ({ address: new URL(url).host, labels: { namespace: NAMESPACE, workload } })) },
        { job: 'tsmesh-control-plane', targets: [{ address: `${host}:${controlPlane.adminPort}`, labels: { namespace: 'tsmesh-system' } }] },
      ], opts.prometheusBinary);
      cleanups.push(() => prometheus?.stop());
    }
    return { mode, controlPlane, controlPlaneHost: host, adminUrls, load, prometheus, network: net, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

interface LoopbackOptions {
  caAddress: string;
  dir: string;
  log: Logger;
  rps: number;
  /** Each sidecar's inbound port, as the mesh file gives it. */
  endpoints: ReadonlyMap<string, { port: number }>;
  cleanups: (() => Promise<void> | void)[];
}

/** Loopback mode: every sidecar in this process, each app calling its sidecar on an explicit port per service. */
async function startLoopbackWorkloads({ caAddress, dir, log, rps, endpoints, cleanups }: LoopbackOptions): Promise<DemoWorkloads> {
  const proxies = new Map<string, RunningProxy>();
  const adminUrls = new Map<string, string>();
  const upstreamUrls = new Map<string, Record<string, string>>();
  for (const w of WORKLOADS) {
    let appPort = 0;
    // The proxy process as `tsmesh proxy` runs it, with the settings a pod's environment would give,
    // except that it listens on loopback and learns each connection's destination from its port.
    const settings: ProxySettings = {
      ...readProxySettings({}),
      podNamespace: NAMESPACE,
      serviceAccount: w.name,
      trustDomain: TRUST_DOMAIN,
      controlPlaneAddress: caAddress,
      tokenPath: join(dir, `${w.name}.token`),
      trustBundlePath: join(dir, CA_FILES.rootCert),
      outboundPort: 0,
      inboundPort: endpoints.get(w.name)!.port,
      adminPort: 0,
      drainDuration: '1s',
    };
    const proxy = await startProxy(settings, {
      log: log.child(w.name),
      host: HOST,
      sidecar: {
        inboundOriginalDestination: () => ({ address: HOST, port: appPort, family: 'IPv4' }),
        outboundOriginalDestination: () => {
          throw new Error('loopback mode: apps call their sidecar on an explicit port per service');
        },
        explicitOutbound: w.calls.map((svc) => ({ port: 0, destination: { address: CLUSTER_IPS[svc]!, port: SERVICE_PORT, family: 'IPv4' as const } })),
      },
    });
    const upstream = Object.fromEntries(w.calls.map((svc, i) => [svc, `http://${HOST}:${proxy.sidecar.explicitOutboundPorts[i]}`]));
    upstreamUrls.set(w.name, upstream);
    const app = createApp(w.name, upstream);
    // Registered before anything below can fail, so that a failed start leaves nothing listening.
    cleanups.push(async () => {
      await proxy.drain();
      app.closeAllConnections();
      if (app.listening) app.close();
    });
    adminUrls.set(w.name, proxy.adminUrl);
    appPort = await listen(app);
    proxies.set(w.name, proxy);
  }

  const deadline = Date.now() + 60_000;
  for (;;) {
    const waiting = [...proxies].filter(([, p]) => p.notReadyReason() !== undefined).map(([name]) => name);
    if (waiting.length === 0) break;
    if (Date.now() > deadline) throw new Error(`sidecars not ready after 60 s: ${waiting.map((name) => `${name} (${proxies.get(name)!.notReadyReason()})`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { adminUrls, load: startLoad(`${upstreamUrls.get('loadgen')!.web}/catalog`, rps) };
}
