// The app containers' own probes, run by the proxy on kubelet's behalf. The
// webhook points kubelet at /app-health/<container>/<livez|readyz|startupz>
// on the admin port and hands the original probe over in TSMESH_APP_PROBES;
// here it runs against the app over loopback, as kubelet would have run it
// (a grpc probe through grpc-health.ts).
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { PROXY_ENV, type AppProbe, type AppProbes } from '../../contract/env.js';
import { grpcHealthCheck } from './grpc-health.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { request: httpRequest } = process.getBuiltinModule('node:http');

export const APP_HEALTH_PATH = /^\/app-health\/[^/]+\/(?:livez|readyz|startupz)$/;
/** Kubernetes' default timeoutSeconds. */
export const DEFAULT_PROBE_TIMEOUT_SECONDS = 1;
/** Kubelet keeps this much of a probe's body for its event message. */
export const MAX_PROBE_BODY_BYTES = 10 * 1024;
/** As kubelet's HTTP prober. */
const MAX_REDIRECTS = 10;
const APP_HOST = '127.0.0.1';

export interface ProbeOutcome {
  /** What kubelet gets: the app's status for an HTTP probe, 200 or 503 otherwise. */
  status: number;
  body: string;
}

export class AppProbesError extends Error {
  override name = 'AppProbesError';
}

/** Reads TSMESH_APP_PROBES; every rejection names the probe and the field. */
export function parseAppProbes(json: string): AppProbes {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (e) {
    throw new AppProbesError(`${PROXY_ENV.APP_PROBES} is not JSON (${(e as Error).message}); the webhook writes it, so re-inject the pod`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new AppProbesError(`${PROXY_ENV.APP_PROBES} must be a JSON object keyed by /app-health/<container>/<livez|readyz|startupz>`);
  const out: AppProbes = {};
  for (const [path, raw] of Object.entries(doc)) {
    const at = `${PROXY_ENV.APP_PROBES}[${JSON.stringify(path)}]`;
    if (!APP_HEALTH_PATH.test(path)) throw new AppProbesError(`${at}: the key is not /app-health/<container>/<livez|readyz|startupz>`);
    out[path] = checkProbe(raw, at);
  }
  return out;
}

function checkProbe(raw: unknown, at: string): AppProbe {
  const fail = (field: string, what: string): never => {
    throw new AppProbesError(`${at}${field}: ${what}`);
  };
  const p = (raw ?? {}) as Record<string, unknown>;
  // Kept as written, but never used: the app is always probed on 127.0.0.1.
  const hostOf = (v: unknown, field: string): { host?: string } => (v === undefined ? {} : typeof v === 'string' ? { host: v } : fail(field, 'must be a string'));
  const port = (v: unknown, field: string): number =>
    typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? v : fail(field, 'must be a port number from 1 to 65535');
  if (typeof raw !== 'object' || raw === null) fail('', 'must be an object with httpGet, tcpSocket or grpc');
  if ([p.httpGet, p.tcpSocket, p.grpc].filter((x) => x !== undefined).length !== 1) fail('', 'needs exactly one of httpGet, tcpSocket and grpc');
  const probe: AppProbe = {};
  if (p.timeoutSeconds !== undefined) {
    const t = p.timeoutSeconds;
    probe.timeoutSeconds = typeof t === 'number' && Number.isInteger(t) && t >= 1 ? t : fail('.timeoutSeconds', 'must be a whole number of seconds, at least 1');
  }
  if (p.grpc !== undefined) {
    const g = (p.grpc ?? {}) as Record<string, unknown>;
    if (g.service !== undefined && typeof g.service !== 'string') fail('.grpc.service', 'must be a string');
    probe.grpc = { port: port(g.port, '.grpc.port'), ...(typeof g.service === 'string' && g.service !== '' ? { service: g.service } : {}) };
    return probe;
  }
  if (p.tcpSocket !== undefined) {
    const t = (p.tcpSocket ?? {}) as Record<string, unknown>;
    probe.tcpSocket = { port: port(t.port, '.tcpSocket.port'), ...hostOf(t.host, '.tcpSocket.host') };
    return probe;
  }
  const h = (p.httpGet ?? {}) as Record<string, unknown>;
  const httpGet: NonNullable<AppProbe['httpGet']> = { port: port(h.port, '.httpGet.port'), ...hostOf(h.host, '.httpGet.host') };
  if (h.path !== undefined) httpGet.path = typeof h.path === 'string' ? h.path : fail('.httpGet.path', 'must be a string');
  if (h.scheme !== undefined) httpGet.scheme = h.scheme === 'HTTP' || h.scheme === 'HTTPS' ? h.scheme : fail('.httpGet.scheme', 'must be HTTP or HTTPS');
  if (h.httpHeaders !== undefined) {
    if (!Array.isArray(h.httpHeaders)) fail('.httpGet.httpHeaders', 'must be a list of {name, value}');
    httpGet.httpHeaders = (h.httpHeaders as unknown[]).map((x, i) => {
      const { name, value } = (x ?? {}) as Record<string, unknown>;
      if (typeof name !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || typeof value !== 'string' || /[\r\n\0]/.test(value))
        fail(`.httpGet.httpHeaders[${i}]`, 'must be {name, value} with a valid header name and a one-line value');
      return { name: name as string, value: value as string };
    });
  }
  probe.httpGet = httpGet;
  return probe;
}

/** Runs one probe against the app on 127.0.0.1 within the probe's own timeout. Never rejects. */
export async function runAppProbe(probe: AppProbe, userAgent = 'tsmesh-app-prober'): Promise<ProbeOutcome> {
  const timeoutMs = (probe.timeoutSeconds ?? DEFAULT_PROBE_TIMEOUT_SECONDS) * 1000;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    if (probe.httpGet) return await httpProbe(probe.httpGet, userAgent, signal);
    if (probe.tcpSocket) return await tcpProbe(probe.tcpSocket.port, signal);
    if (probe.grpc) {
      const r = await grpcHealthCheck(probe.grpc.port, probe.grpc.service ?? '', signal, timeoutMs, userAgent);
      return { status: r.ok ? 200 : 503, body: r.ok ? `gRPC health check of ${describeService(probe.grpc.service)}: SERVING\n` : `app probe failed: ${r.message}\n` };
    }
    return { status: 500, body: 'the probe has none of httpGet, tcpSocket and grpc\n' };
  } catch (e) {
    const why = signal.aborted ? `no answer within ${timeoutMs}ms (the probe's timeoutSeconds)` : (e as Error).message;
    return { status: 503, body: `app probe failed: ${why}\n` };
  }
}

async function httpProbe(get: NonNullable<AppProbe['httpGet']>, userAgent: string, signal: AbortSignal): Promise<ProbeOutcome> {
  const path = get.path === undefined || get.path === '' ? '/' : get.path.startsWith('/') ? get.path : `/${get.path}`;
  let url = new URL(`${get.scheme === 'HTTPS' ? 'https' : 'http'}://${APP_HOST}:${get.port}${path}`);
  const headers: Record<string, string> = { 'user-agent': userAgent, accept: '*/*', connection: 'close' };
  for (const { name, value } of get.httpHeaders ?? []) headers[name.toLowerCase()] = value;

  for (let hop = 0; ; hop++) {
    const res = await get1(url, headers, signal);
    const status = res.statusCode ?? 0;
    const body = await readSome(res, MAX_PROBE_BODY_BYTES);
    if (status < 300 || status >= 400) return { status, body };
    // A 3xx is never relayed: kubelet would follow its Location against the admin port.
    const location = res.headers.location;
    if (!location) return { status: 200, body: `the app answered ${status} without a Location; a redirect counts as success\n` };
    const next = new URL(location, url);
    if (next.hostname !== url.hostname || (next.protocol !== 'http:' && next.protocol !== 'https:'))
      return { status: 200, body: `the app redirects to ${next.href}, which is not followed; as for kubelet, that counts as success\n` };
    if (hop + 1 >= MAX_REDIRECTS) return { status: 503, body: `app probe failed: more than ${MAX_REDIRECTS} redirects\n` };
    url = next;
  }
}

function get1(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const options = { method: 'GET', headers, signal, agent: false as const };
    // Kubelet does not verify the app's certificate either.
    const req = url.protocol === 'https:' ? httpsRequest(url, { ...options, rejectUnauthorized: false }) : httpRequest(url, options);
    req.on('response', resolve);
    req.on('error', reject);
    req.end();
  });
}

function readSome(res: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'));
    res.on('data', (c: Buffer) => {
      chunks.push(c.subarray(0, Math.max(0, max - size)));
      size += c.length;
      if (size >= max) {
        res.destroy();
        done();
      }
    });
    res.on('end', done);
    res.on('error', done);
    res.on('close', done);
  });
}

const describeService = (service: string | undefined): string => (service ? `service ${JSON.stringify(service)}` : 'the server');

function tcpProbe(port: number, signal: AbortSignal): Promise<ProbeOutcome> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: APP_HOST, port, signal });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ status: 200, body: `tcp connect to ${APP_HOST}:${port} succeeded\n` });
    });
    socket.once('error', reject);
  });
}
