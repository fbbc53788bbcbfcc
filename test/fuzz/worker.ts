// The differential fuzzer's process inside the test's network namespace:
// reads a job (JSON on stdin), starts the recording app (one listener per
// lane) and tsmesh's real path for each of its lanes (a client-side
// sidecar's outbound listener, mTLS over tsmesh/mux, a server-side sidecar's
// inbound listener, the app), waits for the reference proxies the harness
// started beside it, then sends every case through every proxy (proxies and
// lanes side by side, the cases of one lane one after another, each
// followed by a canary request) and prints one line: RESULT <json> with what
// each client saw and what the app recorded. Run by harness.ts; never on the
// host's network.
import { connect } from 'node:net';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import type { CertificateAuthority } from '../../ca/authority.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { FixedConfig, loopbackSidecar } from '../../proxy/testdata/mesh.js';
import { RecordingApp } from './app.js';
import { exchange, type Observation } from './client.js';
import { MARKER_IN_TARGET, type ResponseCase } from './corpus.js';
import { canaryFor, laneName, TSMESH, TSMESH_INBOUND, TSMESH_PATHS, type Job, type Lane, type LaneResult, type WorkerResult } from './job.js';
import { readRequests } from './wire.js';

const CLIENT_ID = 'spiffe://cluster.local/ns/fuzz/sa/client';
const APP_ID = 'spiffe://cluster.local/ns/fuzz/sa/app';
/** The ClusterIP the client-side sidecar is told each connection was for; never dialled. */
const SERVICE_IP = '10.96.0.80';
/** After the last case, how long late requests still count. */
const SETTLE_MS = 300;

async function readJob(): Promise<Job> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return JSON.parse(text) as Job;
}

/** Waits until something accepts connections on 127.0.0.1:`port`. */
async function reachable(name: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${name} does not accept connections on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The app's own Service, as its sidecar's config has it: port 80 declared http, to the app's port, this workload its endpoint. */
const appService = (appPort: number): object => ({
  name: 'app',
  namespace: 'fuzz',
  clusterIPs: [SERVICE_IP],
  ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: appPort }],
  endpoints: [{ address: '127.0.0.1', identity: APP_ID }],
});

/** A server-side sidecar whose inbound listener takes plain text (PERMISSIVE) in front of the app: the port its callers outside the mesh reach. */
async function startInbound(ca: CertificateAuthority, appPort: number, sidecars: Sidecar[]): Promise<number> {
  const server = await loopbackSidecar(ca, APP_ID, new FixedConfig({ mesh: { mtlsMode: 'PERMISSIVE' }, services: [appService(appPort)] }), {
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
  });
  sidecars.push(server);
  return server.inboundPort;
}

/** tsmesh as meshed callers get it: the client's sidecar (service port 80, declared http) to the app's sidecar (STRICT), over mTLS. */
async function startMesh(ca: CertificateAuthority, appPort: number, sidecars: Sidecar[]): Promise<number> {
  const server = await loopbackSidecar(ca, APP_ID, new FixedConfig({ mesh: { mtlsMode: 'STRICT' }, services: [appService(appPort)] }), {
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
  });
  sidecars.push(server);
  const client = await loopbackSidecar(
    ca,
    CLIENT_ID,
    new FixedConfig({
      services: [
        {
          name: 'app',
          namespace: 'fuzz',
          clusterIPs: [SERVICE_IP],
          ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: server.inboundPort }],
          endpoints: [{ address: '127.0.0.1', identity: APP_ID }],
        },
      ],
    }),
    { outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }) },
  );
  sidecars.push(client);
  return client.outboundPort;
}

async function main(): Promise<void> {
  const job = await readJob();
  const responses = new Map<string, ResponseCase>();
  for (const c of job.cases) {
    const m = MARKER_IN_TARGET.exec(c.bytes)?.[0];
    if (c.side === 'response' && m !== undefined) responses.set(m, c);
  }
  const app = new RecordingApp(responses);
  for (const lane of job.lanes) await app.listen(lane.proxy, laneName(lane), lane.appPort);
  const sidecars: Sidecar[] = [];
  try {
    const ca = job.lanes.some((l) => TSMESH_PATHS.includes(l.proxy)) ? (await newRootCa()).ca : undefined;
    const ports = new Map<Lane, number>();
    for (const lane of job.lanes) {
      if (lane.port !== undefined) ports.set(lane, lane.port);
      else if (lane.proxy === TSMESH) ports.set(lane, await startMesh(ca!, lane.appPort, sidecars));
      else if (lane.proxy === TSMESH_INBOUND) ports.set(lane, await startInbound(ca!, lane.appPort, sidecars));
      else throw new Error(`lane of ${lane.proxy} without a port`);
    }
    for (const [lane, port] of ports) await reachable(lane.proxy, port, 20_000);
    // One request on each lane first, not counted: connections and handshakes made before the first case.
    await Promise.all([...ports.values()].map((port) => exchange(port, 'GET /warm-up HTTP/1.1\r\nhost: app.fuzz\r\n\r\n', { boundMs: 5000, quietMs: 50 })));
    const proxies = [...new Set(job.lanes.map((l) => l.proxy))];
    const observed = new Map(proxies.map((p) => [p, { observations: [] as Observation[], canaries: [] as Observation[] }]));
    // Each proxy's lanes take its cases in turn, the next one as a lane falls free.
    const next = new Map(proxies.map((p) => [p, 0]));
    await Promise.all(
      [...ports].map(async ([lane, port]) => {
        const out = observed.get(lane.proxy)!;
        const name = laneName(lane);
        for (let i = next.get(lane.proxy)!; i < job.cases.length; i = next.get(lane.proxy)!) {
          next.set(lane.proxy, i + 1);
          const c = job.cases[i]!;
          const m = MARKER_IN_TARGET.exec(c.bytes)?.[0];
          app.current.set(name, m);
          const expect = c.side === 'request' ? Math.max(1, readRequests(c.bytes).requests.length) : 1;
          const atApp = c.side === 'request' ? () => app.received(name, m) : undefined;
          out.observations[i] = await exchange(port, c.bytes, { pieces: c.side === 'request' ? (c.pieces ?? 1) : 1, expect, ...(atApp ? { atApp } : {}), boundMs: job.boundMs, quietMs: job.quietMs });
          out.canaries[i] = await exchange(port, canaryFor(m ?? 'fz-none'), { boundMs: job.boundMs, quietMs: job.quietMs });
          app.current.set(name, undefined);
        }
      }),
    );
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const result: WorkerResult = { proxies: Object.fromEntries(observed) as Record<string, LaneResult>, records: app.records };
    // Written before the process exits: a pipe takes a long line in several writes.
    await new Promise<void>((resolve) => process.stdout.write(`RESULT ${JSON.stringify(result)}\n`, () => resolve()));
  } finally {
    for (const s of sidecars) await s.drain(0);
    await app.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fuzz worker: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
