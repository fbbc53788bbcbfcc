// npm run bench:control: how fast one change reaches many proxies, and what
// each stream costs the control plane.
//
// A real kube-apiserver (test/cluster, when built) holds one Service and its
// EndpointSlice; `tsmesh control-plane` runs as its own process on it; this
// process opens N discovery streams over real mTLS (N proxies' worth), then
// changes the EndpointSlice once and times until every stream has the new
// endpoint. Without the API server tier, the control plane reads a mesh file
// instead (and the change is a file write; the file is polled every 250 ms).
// Ends with: bench:control streams=<n> update_p99_ms=<n> kb_per_stream=<n>
import { spawn, type ChildProcess } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DiscoveryV1Api, CoreV1Api } from '@kubernetes/client-node';
import { buildCsrPem } from '../../ca/csr.js';
import { CA_FILES, loadCaFromDir } from '../../ca/material.js';
import { createRootCa } from '../../ca/root.js';
import { newKey } from '../../ca/testdata/fixtures.js';
import { parseProxyConfig } from '../../contract/validate.js';
import { freePort } from '../../lib/ports.js';
import { apiServerTier, startApiServer, type ApiServer } from '../../test/k8s/apiserver.js';

const STREAMS = Number(process.env.BENCH_STREAMS ?? 1000);
const IDENTITIES = 10;
// The built CLI when there is one (as it runs in a pod), else the sources through tsx.
const BUILT = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');
const MAIN = existsSync(BUILT) ? [BUILT] : ['--import', 'tsx', resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts')];

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function meshFile(address: string): string {
  return `apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nservices:\n  - { name: api, namespace: bench, clusterIPs: [10.96.0.10], ports: [{ port: 80, targetPort: 8080 }], endpoints: [{ address: ${address}, serviceAccount: api }] }\n`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-bench-control-'));
  let server: ApiServer | undefined;
  let child: ChildProcess | undefined;
  const cleanup: (() => void)[] = [];
  try {
    const root = await createRootCa('cluster.local');
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'tokens.yaml'), 'tokens: []\n');
    const tier = apiServerTier();
    const port = await freePort();
    const adminPort = await freePort();
    let source: string;
    const args = [...MAIN, 'control-plane', '--ca-dir', dir, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--no-webhook', '--log-level', 'warn'];
    let change: () => Promise<void>;
    if (tier.ok) {
      server = await startApiServer();
      source = 'Kubernetes (real kube-apiserver, one EndpointSlice change)';
      const core = server.kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: 'bench' } } });
      await core.createNamespacedService({ namespace: 'bench', body: { metadata: { name: 'api' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } } });
      const disco = server.kc.makeApiClient(DiscoveryV1Api);
      const slice = (address: string) => ({
        metadata: { name: 'api-1', labels: { 'kubernetes.io/service-name': 'api' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [address], conditions: { ready: true } }],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      });
      await disco.createNamespacedEndpointSlice({ namespace: 'bench', body: slice('10.244.1.5') });
      args.push('--kubeconfig', server.kubeconfigPath, '--no-ca');
      change = async () => {
        await disco.replaceNamespacedEndpointSlice({ namespace: 'bench', name: 'api-1', body: slice('10.244.9.9') });
      };
    } else {
      source = `mesh file (${tier.reason})`;
      writeFileSync(join(dir, 'mesh.yaml'), meshFile('10.244.1.5'));
      args.push('--token-file', join(dir, 'tokens.yaml'), '--mesh-file', join(dir, 'mesh.yaml'));
      change = async () => writeFileSync(join(dir, 'mesh.yaml'), meshFile('10.244.9.9'));
    }
    child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      if (child.exitCode !== null) throw new Error(`the control plane exited: ${stderr}`);
      await sleep(200);
    }
    await sleep(300);
    const idle = rssKb(child.pid!);

    const ca = await loadCaFromDir(dir, { trustDomain: 'cluster.local' });
    const creds = Array.from({ length: IDENTITIES }, (_, i) => {
      const key = newKey();
      const id = `spiffe://cluster.local/ns/bench/sa/client-${i}`;
      const issued = ca.signWorkloadCsr(buildCsrPem(key, id), id);
      return { key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: issued.trustBundlePem };
    });
    // Raw stream readers: one process cannot parse 1000 configs at once the way
    // 1000 proxies do in parallel, so arrival on the wire is what is timed; one
    // proxy's parse of a config line is timed apart below.
    const seenNew = new Array<number>(STREAMS).fill(0);
    const firstConfig = new Array<string>(STREAMS).fill('');
    const responses: IncomingMessage[] = [];
    let t0 = 0;
    const t = Date.now();
    for (let i = 0; i < STREAMS; i++) {
      const c = creds[i % IDENTITIES]!;
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/v1/config', key: c.key, cert: c.cert, ca: c.ca, agent: false }, (res) => {
        responses.push(res);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (!firstConfig[i]) firstConfig[i] = chunk;
          if (t0 && !seenNew[i] && chunk.includes('10.244.9.9')) seenNew[i] = Date.now() - t0;
        });
        res.on('error', () => undefined);
      });
      req.on('error', (e) => console.error(`stream ${i}: ${e.message}`));
      req.end();
      if (i % 50 === 49) await sleep(20); // spread the handshakes a little
    }
    while (firstConfig.some((f) => f === '')) {
      if (Date.now() - t > 120_000) throw new Error(`only ${firstConfig.filter((f) => f).length} of ${STREAMS} streams got a config`);
      await sleep(100);
    }
    cleanup.push(() => responses.forEach((r) => r.destroy()));
    const line = firstConfig[0]!.split('\n')[0]!;
    const p0 = performance.now();
    for (let k = 0; k < 100; k++) parseProxyConfig(JSON.parse(line));
    const parseMs = (performance.now() - p0) / 100;
    const connectedIn = Date.now() - t;
    await sleep(1000);
    const loaded = rssKb(child.pid!);

    t0 = Date.now();
    await change();
    while (seenNew.some((v) => v === 0)) {
      if (Date.now() - t0 > 30_000) throw new Error(`${seenNew.filter((v) => v === 0).length} streams never saw the change`);
      await sleep(5);
    }
    const lat = [...seenNew].sort((a, b) => a - b);
    const kbPerStream = (loaded - idle) / STREAMS;
    console.log(`source: ${source}`);
    console.log(`${STREAMS} streams over mTLS (${IDENTITIES} identities) connected in ${connectedIn} ms`);
    console.log(`one change -> on the wire of every stream: min ${lat[0]} ms, p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms, max ${lat[lat.length - 1]} ms`);
    console.log(`a proxy parses and validates one config line (${line.length} bytes) in ${parseMs.toFixed(3)} ms`);
    console.log(`control plane RSS: ${(idle / 1024).toFixed(1)} MB idle, ${(loaded / 1024).toFixed(1)} MB with ${STREAMS} streams: ${kbPerStream.toFixed(1)} kB per stream`);
    console.log(`bench:control streams=${STREAMS} update_p99_ms=${pct(lat, 99)} kb_per_stream=${kbPerStream.toFixed(1)}`);
  } finally {
    for (const c of cleanup) c();
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
