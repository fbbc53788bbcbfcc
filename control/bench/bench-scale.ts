// npm run bench:scale: how the control plane and each proxy's config grow
// with the cluster.
//
// A real kube-apiserver (test/cluster) holds a synthetic cluster: --services
// Services with ClusterIPs across namespaces (100 Services a namespace), one
// ServiceAccount per Service, --endpoints endpoints in one EndpointSlice per
// Service, each endpoint a meshed Pod (tsmesh.io/status, the Service's
// ServiceAccount, nodeName set; no kubelet runs, so the pods stay Pending:
// the control plane reads a pod's annotation and ServiceAccount through the
// slice's targetRef, not its status). `tsmesh control-plane` runs as its own
// process on it (the project compiled as a container runs it). This process
// opens --streams discovery streams over real mTLS, stream i as a pod of
// Service i mod N (so min(streams, services) identities unless --identities
// says fewer), reads them as raw bytes (lines counted and timed, not parsed:
// one process cannot parse thousands of configs the way thousands of proxies
// do in parallel) and parses one. One real `tsmesh proxy` (its certificate
// from the control plane's CA with a TokenRequest token) runs on the stream
// beside them; a second runs on a config file of only the --calls services
// it would call, as the comparator for a proxy whose config grows with what
// it calls. Then --changes times, one EndpointSlice grows or shrinks by one
// endpoint, and each stream's next line is timed from the API write.
//
// One line per figure: `scale services=N endpoints=M streams=S identities=I
// figure=<name> value=<v> [aim=<v>] [comparator=<v>]`, then one summary line.
// Without the API server tier it prints why and exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { buildCsrPem } from '../../ca/csr.js';
import { CA_FILES, loadCaFromDir } from '../../ca/material.js';
import { createRootCa } from '../../ca/root.js';
import { newKey } from '../../ca/testdata/fixtures.js';
import { PROXY_ENV, PROXY_NODE_OPTIONS } from '../../contract/env.js';
import { MESH_NAMESPACE, STATUS_ANNOTATION } from '../../contract/names.js';
import { DELTAS_HEADER } from '../../contract/proxy-status.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { freePort } from '../../lib/ports.js';
import { cpuSeconds } from '../../proxy/bench/measure.js';
import { loadAverage, median } from '../../proxy/bench/pods.js';
import { REPO, run } from '../../proxy/bench/topology.js';
import { apiServerTier, requestToken, startApiServer, type ApiServer } from '../../test/k8s/apiserver.js';

const USAGE = `Usage: npm run bench:scale -- [--services N] [--endpoints M] [--streams S] [--identities I] [--changes K] [--calls C] [--tree DIR] [--whole]
  --services   Services in the cluster (default 100)
  --endpoints  endpoints over all EndpointSlices, each a meshed Pod (default 500)
  --streams    discovery streams held open (default 50)
  --identities distinct ServiceAccounts among the streams (default min(streams, services))
  --changes    EndpointSlice changes timed (default 5)
  --calls      services a proxy calls, for the comparator config (default 10)
  --tree       compile the control plane and proxy from this checkout of the project (A/B runs; default this one)
  --whole      the streams do not ask for deltas (no x-tsmesh-config-deltas header): a whole config every change
The issue's full scale: --services 10000 --endpoints 50000 --streams 2000`;

/** The aims the figures are read against. */
const AIM = { cpRssMb: 500, updateP99Ms: 1000, proxyGrowth: 2 };
const TRUST_DOMAIN = 'cluster.local';
const PER_NAMESPACE = 100;
/** Requests to the API server in flight while the cluster is made. */
const PARALLEL = 32;
// A build of its own per run, so runs side by side (an A/B) never run each other's code.
const BUILD_ROOT = join(REPO, 'node_modules', '.cache', `tsmesh-bench-scale-${process.pid}`);
const BUILD = join(BUILD_ROOT, 'dist');
const MAIN = join(BUILD, 'cli', 'main.js');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
const f = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'NaN');

function flags(): { services: number; endpoints: number; streams: number; identities: number; changes: number; calls: number; tree: string; whole: boolean } {
  const { values } = parseArgs({
    options: {
      services: { type: 'string', default: '100' },
      endpoints: { type: 'string', default: '500' },
      streams: { type: 'string', default: '50' },
      identities: { type: 'string' },
      changes: { type: 'string', default: '5' },
      calls: { type: 'string', default: '10' },
      tree: { type: 'string', default: REPO },
      whole: { type: 'boolean', default: false },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const whole = (name: string, raw: string | undefined): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) {
      console.error(`--${name} ${JSON.stringify(raw)} is not a positive whole number\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const services = whole('services', values.services);
  const streams = whole('streams', values.streams);
  const endpoints = whole('endpoints', values.endpoints);
  if (endpoints < services) {
    console.error(`--endpoints ${endpoints} is fewer than --services ${services}: every Service gets at least one endpoint\n${USAGE}`);
    process.exit(2);
  }
  if (Math.ceil(endpoints / services) > 254) {
    console.error(`--endpoints ${endpoints} over --services ${services} is more than 254 endpoints a Service (one /24 each)\n${USAGE}`);
    process.exit(2);
  }
  const identities = values.identities === undefined ? Math.min(streams, services) : whole('identities', values.identities);
  if (!existsSync(join(values.tree, 'tsconfig.build.json'))) {
    console.error(`--tree ${values.tree}: no tsconfig.build.json there; give a checkout of the project\n${USAGE}`);
    process.exit(2);
  }
  return { services, endpoints, streams, identities: Math.min(identities, services, streams), changes: whole('changes', values.changes), calls: Math.min(services, whole('calls', values.calls)), tree: values.tree, whole: values.whole };
}

/** Runs `fn` over `items`, `PARALLEL` at a time. */
async function parallel<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** The synthetic cluster: Service i lives in namespace ns-(i / 100), served by ServiceAccount svc-i's pods. */
class Cluster {
  readonly core: CoreV1Api;
  readonly disco: DiscoveryV1Api;
  /** Endpoints per Service, the remainder spread over the first ones. */
  readonly counts: number[];

  constructor(kc: KubeConfig, readonly services: number, endpoints: number) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.disco = kc.makeApiClient(DiscoveryV1Api);
    this.counts = Array.from({ length: services }, (_, i) => Math.floor(endpoints / services) + (i < endpoints % services ? 1 : 0));
  }

  static namespace(i: number): string {
    return `ns-${Math.floor(i / PER_NAMESPACE)}`;
  }

  static service(i: number): string {
    return `svc-${i}`;
  }

  /** Pod j of Service i's address, in 10.128.0.0/9 (away from the ClusterIPs' 10.96.0.0/16): j < 256. */
  static address(i: number, j: number): string {
    const n = i * 256 + j;
    return `10.${128 + ((n >> 16) & 127)}.${(n >> 8) & 255}.${n & 255}`;
  }

  private pod(i: number, j: number) {
    return {
      metadata: { name: `svc-${i}-${j}`, annotations: { [STATUS_ANNOTATION]: 'injected' }, labels: { app: Cluster.service(i) } },
      spec: { serviceAccountName: Cluster.service(i), automountServiceAccountToken: false, nodeName: 'bench-node', containers: [{ name: 'app', image: 'app' }] },
    };
  }

  slice(i: number, count: number): V1EndpointSlice {
    const namespace = Cluster.namespace(i);
    return {
      metadata: { name: `${Cluster.service(i)}-1`, labels: { 'kubernetes.io/service-name': Cluster.service(i) } },
      addressType: 'IPv4',
      endpoints: Array.from({ length: count }, (_, j) => ({
        addresses: [Cluster.address(i, j)],
        conditions: { ready: true },
        targetRef: { kind: 'Pod', namespace, name: `svc-${i}-${j}` },
      })),
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    };
  }

  async createPod(i: number, j: number): Promise<void> {
    await this.core.createNamespacedPod({ namespace: Cluster.namespace(i), body: this.pod(i, j) });
  }

  async create(progress: (what: string) => void): Promise<void> {
    const ids = Array.from({ length: this.services }, (_, i) => i);
    // The mesh's own namespace too, where the control plane holds its leader Lease, as in an installed mesh.
    const namespaces = [MESH_NAMESPACE, ...new Set(ids.map(Cluster.namespace))];
    await parallel(namespaces, (name) => this.core.createNamespace({ body: { metadata: { name } } }));
    await parallel(ids, (i) => this.core.createNamespacedServiceAccount({ namespace: Cluster.namespace(i), body: { metadata: { name: Cluster.service(i) } } }));
    progress(`${namespaces.length - 1} namespaces, ${this.services} ServiceAccounts`);
    await parallel(ids, (i) =>
      this.core.createNamespacedService({
        namespace: Cluster.namespace(i),
        body: { metadata: { name: Cluster.service(i) }, spec: { selector: { app: Cluster.service(i) }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
      }),
    );
    progress(`${this.services} Services`);
    const pods = ids.flatMap((i) => Array.from({ length: this.counts[i]! }, (_, j) => [i, j] as const));
    await parallel(pods, ([i, j]) => this.createPod(i, j));
    progress(`${pods.length} Pods`);
    await parallel(ids, (i) => this.disco.createNamespacedEndpointSlice({ namespace: Cluster.namespace(i), body: this.slice(i, this.counts[i]!) }));
    progress(`${this.services} EndpointSlices`);
  }
}

/** One discovery stream read as bytes: each non-empty line's version, size and arrival. */
interface Stream {
  lines: { version: string; bytes: number; at: number }[];
  /** The first line whole, kept only for the stream that is parsed. */
  first?: Buffer[];
  res?: IncomingMessage;
  /** Why the stream ended before its first config (the control plane reset it, or answered with an error). */
  failed?: string;
  /** The stream ended. */
  ended?: boolean;
  /** The control plane answered that it sends deltas (DELTAS_HEADER). */
  deltas?: boolean;
}

function openStream(port: number, tls: { key: string; cert: string; ca: string }, keepFirst: boolean, deltas: boolean): Stream {
  const s: Stream = { lines: [], ...(keepFirst ? { first: [] } : {}) };
  let bytes = 0;
  let head = '';
  const fail = (why: string): void => {
    if (s.lines.length === 0) s.failed ??= why;
  };
  const req = httpsRequest({ host: '127.0.0.1', port, path: '/v1/config', ...tls, agent: false, headers: deltas ? { [DELTAS_HEADER]: '1' } : {} }, (res) => {
    s.res = res;
    s.deltas = res.headers[DELTAS_HEADER] === '1';
    if (res.statusCode !== 200) fail(`HTTP ${res.statusCode}`);
    res.on('close', () => {
      s.ended = true;
      fail('closed');
    });
    res.on('data', (chunk: Buffer) => {
      let from = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, from);
        const end = nl < 0 ? chunk.length : nl;
        if (head.length < 64) head += chunk.subarray(from, Math.min(end, from + 64)).toString('latin1');
        bytes += end - from;
        if (s.first && s.lines.length === 0) s.first.push(chunk.subarray(from, end));
        if (nl < 0) break;
        if (bytes > 0) s.lines.push({ version: /"version":"([^"]*)"/.exec(head)?.[1] ?? '', bytes: bytes + 1, at: Date.now() });
        bytes = 0;
        head = '';
        from = nl + 1;
      }
    });
    res.on('error', () => undefined);
  });
  req.on('error', (e) => fail(e.message));
  req.end();
  return s;
}

/** A process's JavaScript heap in use (MB), from the diagnostic report it writes on SIGUSR2 (--report-on-signal). */
async function reportedHeapMb(child: ChildProcess, dir: string): Promise<number> {
  const before = new Set(readdirSync(dir));
  child.kill('SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const file = readdirSync(dir).find((n) => n.startsWith('report.') && !before.has(n));
    if (file) {
      try {
        const report = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { javascriptHeap?: { usedMemory?: number } };
        rmSync(join(dir, file));
        return (report.javascriptHeap?.usedMemory ?? NaN) / 2 ** 20;
      } catch {
        // still being written
      }
    }
  }
  return NaN;
}

/** The control plane's JavaScript heap in use (MB), from its /metrics. */
async function cpHeapMb(adminPort: number): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text(), () => '');
  return Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? NaN) / 2 ** 20;
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, alive?: { child: ChildProcess; log: () => string }): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (alive && alive.child.exitCode !== null) throw new Error(`exited while waiting for ${what}:\n${alive.log().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${alive ? `:\n${alive.log().slice(-2000)}` : ''}`);
    await sleep(100);
  }
}

async function main(): Promise<void> {
  const o = flags();
  const tier = apiServerTier();
  if (!tier.ok) {
    console.log(`bench:scale skipped: ${tier.reason}`);
    return;
  }
  const started = Date.now();
  const loads: number[] = [loadAverage()];
  const tag = `scale services=${o.services} endpoints=${o.endpoints} streams=${o.streams} identities=${o.identities}`;
  const figure = (name: string, value: number | string, extra = ''): void => console.log(`${tag} figure=${name} value=${typeof value === 'number' ? (Number.isInteger(value) ? String(value) : f(value, 3)) : value}${extra}`);
  const step = (what: string): void => console.log(`[${f((Date.now() - started) / 1000, 0)} s] ${what} (load ${f(loadAverage(), 2)})`);
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-bench-scale-'));
  const children: ChildProcess[] = [];
  const streams: Stream[] = [];
  let server: ApiServer | undefined;
  try {
    step(`building ${o.tree} (tsc) into ${BUILD}`);
    const build = await run(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(o.tree, 'tsconfig.build.json'), '--outDir', BUILD], 300_000);
    if (!existsSync(MAIN)) throw new Error(`tsc emitted no ${MAIN}:\n${build.stdout.slice(0, 2000)}`);
    if (build.code !== 0) console.log(`  tsc reported errors (exit ${build.code}); running what it emitted`);

    server = await startApiServer({ extraArgs: ['--max-requests-inflight=2000', '--max-mutating-requests-inflight=1000'] });
    const cluster = new Cluster(server.kc, o.services, o.endpoints);
    await cluster.create((what) => step(`created ${what}`));

    const root = await createRootCa(TRUST_DOMAIN);
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    const port = await freePort();
    const adminPort = await freePort();
    let cpLog = '';
    const cp = spawn(
      process.execPath,
      [`--report-on-signal`, `--report-directory=${dir}`, '--report-compact', MAIN, 'control-plane', '--ca-dir', dir, '--kubeconfig', server.kubeconfigPath, '--host', '127.0.0.1', '--no-scrape',
        '--port', String(port), '--admin-port', String(adminPort), '--no-webhook', '--log-level', 'warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(cp);
    cp.stderr!.on('data', (d: Buffer) => (cpLog = (cpLog + d.toString()).slice(-20_000)));
    const cpAlive = { child: cp, log: () => cpLog };
    const cpStart = Date.now();
    await waitUntil('the control plane to be ready', () => fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false), 600_000, cpAlive);
    step(`control plane ready (discovery synced) in ${Date.now() - cpStart} ms`);
    await sleep(1000);
    figure('cp_sync_cpu_s', cpuSeconds(cp.pid!));
    figure('cp_sync_rss_mb', rssMb(cp.pid!), ` aim=${AIM.cpRssMb}`);
    figure('cp_sync_heap_mb', await cpHeapMb(adminPort));

    // Stream i is a pod of Service i mod identities.
    const ca = await loadCaFromDir(dir, { trustDomain: TRUST_DOMAIN });
    const creds = Array.from({ length: o.identities }, (_, i) => {
      const key = newKey();
      const id = `spiffe://${TRUST_DOMAIN}/ns/${Cluster.namespace(i)}/sa/${Cluster.service(i)}`;
      const issued = ca.signWorkloadCsr(buildCsrPem(key, id), id);
      return { key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: issued.trustBundlePem };
    });
    const cpuBefore = cpuSeconds(cp.pid!);
    const connectStart = Date.now();
    for (let i = 0; i < o.streams; i++) {
      streams.push(openStream(port, creds[i % o.identities]!, i === 0, !o.whole));
      if (i % 50 === 49) await sleep(20); // spread the handshakes a little
    }
    // A stream the control plane ends before its first config is counted, not waited for (a proxy would reconnect).
    await waitUntil('every stream to get its first config', () => streams.every((s) => s.lines.length > 0 || s.failed), 1_800_000, cpAlive);
    const failed = streams.filter((s) => s.failed);
    if (failed.length === o.streams) throw new Error(`every stream failed before its first config: ${failed[0]!.failed}`);
    if (streams[0]!.failed) throw new Error(`the parsed stream failed before its first config: ${streams[0]!.failed}`);
    step(`${o.streams - failed.length} streams got their first config in ${Date.now() - connectStart} ms${failed.length ? `; ${failed.length} ended before it (${[...new Set(failed.map((s) => s.failed))].join(', ')})` : ''}`);
    figure('streams_failed', failed.length);
    figure('streams_deltas', streams.filter((s) => s.deltas).length, ` of=${o.streams}`);
    figure('streams_connect_ms', Date.now() - connectStart);
    streams.splice(0, streams.length, ...streams.filter((s) => !s.failed));
    figure('cp_connect_cpu_s', cpuSeconds(cp.pid!) - cpuBefore);
    const config = JSON.parse(Buffer.concat(streams[0]!.first!).toString('utf8')) as ProxyConfig;
    const configBytes = median(streams.map((s) => s.lines[0]!.bytes));
    // What a proxy that calls --calls services would hold: the same config with only those.
    const called = config.services.filter((s) => s.name !== Cluster.service(0)).slice(0, o.calls);
    const subset: ProxyConfig = { ...config, services: [...config.services.filter((s) => s.name === Cluster.service(0) && s.namespace === Cluster.namespace(0)), ...called] };
    const subsetBytes = JSON.stringify(subset).length + 1;
    figure('config_bytes', configBytes, ` comparator=${subsetBytes} comparator_is=config_of_${o.calls}_called_services`);
    figure('config_services', config.services.length, ` comparator=${subset.services.length}`);
    figure('config_endpoints', config.services.reduce((n, s) => n + s.endpoints.length, 0));
    await sleep(1000);
    figure('cp_streams_rss_mb', rssMb(cp.pid!), ` aim=${AIM.cpRssMb}`);
    figure('cp_streams_heap_mb', await cpHeapMb(adminPort));

    // One real proxy on the stream, and one on a config file of only the services it calls.
    writeFileSync(join(dir, 'subset.json'), JSON.stringify(subset));
    const proxy0 = Cluster.service(0);
    const { token } = await requestToken(server.kc, Cluster.namespace(0), proxy0, 'tsmesh-ca', 3600);
    writeFileSync(join(dir, 'token'), token);
    const proxies: { name: string; child: ChildProcess; admin: number; log: () => string }[] = [];
    for (const name of ['stream', 'file']) {
      const [inbound, outbound, admin] = [await freePort(), await freePort(), await freePort()];
      let log = '';
      const child = spawn(process.execPath, [PROXY_NODE_OPTIONS, '--report-on-signal', `--report-directory=${dir}`, '--report-compact', MAIN, 'proxy', ...(name === 'file' ? ['--config-file', join(dir, 'subset.json')] : [])], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          ...process.env,
          [PROXY_ENV.CONTROL_PLANE_ADDRESS]: `127.0.0.1:${port}`,
          [PROXY_ENV.TOKEN_PATH]: join(dir, 'token'),
          [PROXY_ENV.TRUST_BUNDLE_PATH]: join(dir, CA_FILES.rootCert),
          [PROXY_ENV.POD_NAMESPACE]: Cluster.namespace(0),
          [PROXY_ENV.POD_NAME]: `svc-0-0`,
          [PROXY_ENV.SERVICE_ACCOUNT]: proxy0,
          [PROXY_ENV.INBOUND_PORT]: String(inbound),
          [PROXY_ENV.OUTBOUND_PORT]: String(outbound),
          [PROXY_ENV.ADMIN_PORT]: String(admin),
          [PROXY_ENV.LOG_LEVEL]: 'warn',
        },
      });
      children.push(child);
      child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
      proxies.push({ name, child, admin, log: () => log });
    }
    for (const p of proxies) {
      await waitUntil(`the ${p.name} proxy to be ready`, () => fetch(`http://127.0.0.1:${p.admin}/ready`).then((r) => r.ok, () => false), 600_000, p);
    }
    await sleep(2000);
    const [onStream, onFile] = proxies as [(typeof proxies)[0], (typeof proxies)[0]];
    const fileHeap = await reportedHeapMb(onFile.child, dir);
    figure('proxy_rss_mb', rssMb(onStream.child.pid!), ` comparator=${f(rssMb(onFile.child.pid!))} comparator_is=proxy_on_${o.calls}_called_services`);
    figure('proxy_heap_mb', await reportedHeapMb(onStream.child, dir), ` comparator=${f(fileHeap)}`);
    step('proxies measured; changing EndpointSlices');

    // Changes: Service c's slice grows by one endpoint (a pod made beforehand), then the next change shrinks it back.
    const latencies: number[] = [];
    const changeBytes: number[] = [];
    let cpPeakRss = rssMb(cp.pid!);
    const sampler = setInterval(() => (cpPeakRss = Math.max(cpPeakRss, rssMb(cp.pid!))), 100);
    const changeCpu0 = cpuSeconds(cp.pid!);
    let missed = 0;
    try {
      for (let k = 0; k < o.changes; k++) {
        const i = (Math.floor(k / 2) * 7919) % o.services;
        const grow = k % 2 === 0;
        const count = cluster.counts[i]! + (grow ? 1 : 0);
        if (grow) await cluster.createPod(i, cluster.counts[i]!).catch(() => undefined);
        await sleep(500); // the pod's own event rebuilds an equal model, which is not pushed
        const seen = streams.map((s) => s.lines.length);
        const t0 = Date.now();
        await cluster.disco.replaceNamespacedEndpointSlice({ namespace: Cluster.namespace(i), name: `${Cluster.service(i)}-1`, body: cluster.slice(i, count) });
        await waitUntil(`change ${k} on every stream`, () => streams.every((s, n) => s.lines.length > seen[n]! || s.ended), 600_000, cpAlive).catch((e: Error) => console.log(`  ${e.message.split('\n')[0]}`));
        for (const [n, s] of streams.entries()) {
          const line = s.lines[seen[n]!];
          if (!line) {
            missed++;
            continue;
          }
          latencies.push(line.at - t0);
          changeBytes.push(line.bytes);
        }
        step(`change ${k + 1}/${o.changes} (${grow ? 'grow' : 'shrink'} ${Cluster.service(i)}) on every stream after ${Math.max(...streams.map((s, n) => (s.lines[seen[n]!]?.at ?? NaN) - t0))} ms`);
      }
    } finally {
      clearInterval(sampler);
    }
    const sorted = latencies.sort((a, b) => a - b);
    figure('update_p50_ms', pct(sorted, 50), ` aim=${AIM.updateP99Ms}`);
    figure('update_p99_ms', pct(sorted, 99), ` aim=${AIM.updateP99Ms}`);
    figure('update_max_ms', sorted[sorted.length - 1] ?? NaN);
    figure('updates_missed', missed);
    const changeMedian = median(changeBytes);
    // What a delta would carry: the changed Service's entry of the config, one endpoint more than it had.
    const changed = config.services.find((s) => s.name === Cluster.service(0) && s.namespace === Cluster.namespace(0));
    figure('change_bytes_per_stream', changeMedian, ` comparator=${changed ? JSON.stringify(changed).length : NaN} comparator_is=changed_service_json`);
    figure('change_bytes_all_streams', changeBytes.reduce((a, b) => a + b, 0) / Math.max(1, o.changes));
    figure('cp_cpu_s_per_change', (cpuSeconds(cp.pid!) - changeCpu0) / o.changes);
    figure('cp_change_peak_rss_mb', cpPeakRss, ` aim=${AIM.cpRssMb}`);
    figure('cp_after_heap_mb', await cpHeapMb(adminPort));
    figure('proxy_after_rss_mb', rssMb(onStream.child.pid!));
    loads.push(loadAverage());
    figure('load_average', `${f(loads[0]!, 2)}..${f(loads[1]!, 2)}`, ` cpus=${availableParallelism()}`);
    console.log(
      `${tag} cp_rss_mb=${f(cpPeakRss)} config_bytes=${configBytes} change_bytes_per_stream=${changeMedian} update_p50_ms=${pct(sorted, 50)} update_p99_ms=${pct(sorted, 99)} proxy_rss_mb=${f(rssMb(onStream.child.pid!))} load=${f(loads[0]!, 2)}..${f(loads[1]!, 2)}`,
    );
  } finally {
    for (const s of streams) s.res?.destroy();
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await Promise.race([new Promise((r) => c.once('exit', r)), sleep(10_000).then(() => c.kill('SIGKILL'))]);
      }
    }
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(BUILD_ROOT, { recursive: true, force: true });
  }
}

await main();
