// `tsmesh control-plane` as a process against the test's API server, with
// the control plane's own ServiceAccount token (the RBAC of manifests/), on
// free loopback ports; and a proxy's discovery stream to it, with a
// certificate from its CA. Shared by the tests that run the whole control plane.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadCaFromDir } from '../../ca/material.js';
import { buildCsrPem } from '../../ca/csr.js';
import { newKey } from '../../ca/testdata/fixtures.js';
import { freePort } from '../../lib/ports.js';
import { silentLogger } from '../../lib/log.js';
import { StreamConfigSource } from '../../proxy/config/stream.js';
import { requestToken } from './apiserver.js';
import { kubeConfigWithToken } from './manifests.js';

const MAIN = resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts');

export interface ControlPlanePorts {
  ca: number;
  admin: number;
  webhook: number;
}

export async function freeControlPlanePorts(): Promise<ControlPlanePorts> {
  return { ca: await freePort(), admin: await freePort(), webhook: await freePort() };
}

export interface ControlPlaneProcess {
  child: ChildProcess;
  /** What it logged so far. */
  stderr(): string;
  /** SIGTERM, and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts the control plane with the CA of `caDir`; its kubeconfig is written into `dir`. */
export async function startControlPlaneProcess(kc: KubeConfig, o: { dir: string; caDir: string; ports: ControlPlanePorts; args?: string[] }): Promise<ControlPlaneProcess> {
  const { token } = await requestToken(kc, 'tsmesh-system', 'tsmesh-control-plane', 'https://kubernetes.default.svc.cluster.local', 3600);
  writeFileSync(join(o.dir, 'kubeconfig'), kubeConfigWithToken(kc, token, 'tsmesh-control-plane').exportConfig());
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, 'control-plane', '--ca-dir', o.caDir, '--kubeconfig', join(o.dir, 'kubeconfig'), '--host', '127.0.0.1', '--no-scrape', ...(o.args ?? []),
      '--port', String(o.ports.ca), '--admin-port', String(o.ports.admin), '--webhook-port', String(o.ports.webhook)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return {
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The discovery stream as the proxy of `spiffeId` gets it, with a certificate from the CA in `caDir`; started. */
export async function proxyStream(caDir: string, caPort: number, spiffeId: string): Promise<StreamConfigSource> {
  const ca = await loadCaFromDir(caDir, { trustDomain: 'cluster.local' });
  const key = newKey();
  const issued = ca.signWorkloadCsr(buildCsrPem(key, spiffeId), spiffeId);
  const stream = new StreamConfigSource({
    address: `127.0.0.1:${caPort}`,
    tls: () => ({ key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: issued.trustBundlePem }),
    log: silentLogger,
  });
  stream.start();
  return stream;
}
