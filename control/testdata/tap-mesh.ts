// A small mesh on loopback for the tap tests: an app, sidecars web (the
// caller's) and api (the app's), a mesh file naming both, a control plane in
// local mode on it serving tap; and a client of the tap stream.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { CertificateAuthority } from '../../ca/authority.js';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import { silentLogger } from '../../lib/log.js';
import type { TapEvent } from '../../contract/tap.js';
import { FixedConfig, loopbackSidecar } from '../../proxy/testdata/mesh.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { startControlPlane, type ControlPlaneOptions, type RunningControlPlane } from '../plane.js';
import { FileMeshSource } from '../sources/file.js';

export const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
export const API = 'spiffe://cluster.local/ns/shop/sa/api';
const API_IP = '10.96.0.10';
/** The pod name api's sidecar knows itself by. */
export const API_POD = 'api-5d8f7b';

export interface TapMesh {
  /** web: the caller's sidecar. */
  a: Sidecar;
  /** api: the app's sidecar. */
  b: Sidecar;
  plane: RunningControlPlane;
  dir: string;
  close(): Promise<void>;
}

/**
 * The mesh, its control plane serving tap with `tap` (local mode without
 * authorization by default). The app answers 500 under /fail, else 200, with
 * a set-cookie header and a 15-byte body.
 */
export async function startTapMesh(ca: CertificateAuthority, tap: NonNullable<ControlPlaneOptions['tap']> = {}): Promise<TapMesh> {
  const parts: { app?: Server; a?: Sidecar; b?: Sidecar; source?: FileMeshSource; plane?: RunningControlPlane; dir?: string } = {};
  const close = async (): Promise<void> => {
    await parts.plane?.close();
    parts.source?.close();
    await Promise.all([parts.a?.drain(0), parts.b?.drain(0)]);
    parts.app?.close();
    if (parts.dir) rmSync(parts.dir, { recursive: true, force: true });
  };
  try {
    const app = (parts.app = createServer((req, res) => {
      const status = req.url?.startsWith('/fail') ? 500 : 200;
      res.writeHead(status, { 'content-type': 'text/plain', 'set-cookie': 'session=s3cret' }).end('hello from api\n');
    }));
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    const toApp = { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' as const }) };
    const b = (parts.b = await loopbackSidecar(ca, API, new FixedConfig({}), { ...toApp, telemetry: { podName: API_POD } }));
    const a = (parts.a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [{ name: 'api', namespace: 'shop', clusterIPs: [API_IP], ports: [{ port: 80, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }),
      { ...toApp, outboundOriginalDestination: () => ({ address: API_IP, port: 80, family: 'IPv4' }) },
    ));
    const dir = (parts.dir = mkdtempSync(join(tmpdir(), 'tsmesh-tap-')));
    const file = join(dir, 'mesh.yaml');
    // Local mode: each sidecar is found at its meshed endpoint, the port its Service's targetPort names.
    writeFileSync(
      file,
      `apiVersion: tsmesh.io/v1alpha1
kind: Mesh
services:
  - { name: api, namespace: shop, clusterIPs: [${API_IP}], ports: [{ port: 80, targetPort: ${b.inboundPort} }], endpoints: [{ address: 127.0.0.1, serviceAccount: api }] }
  - { name: web, namespace: shop, clusterIPs: [10.96.0.11], ports: [{ port: 80, targetPort: ${a.inboundPort} }], endpoints: [{ address: 127.0.0.1, serviceAccount: web }] }
`,
    );
    const source = (parts.source = new FileMeshSource(file, silentLogger, 20));
    const plane = (parts.plane = await startControlPlane({ authority: ca, authenticator: new TokenFileAuthenticator([]), meshSource: source, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0, tap }));
    return { a, b, plane, dir, close };
  } catch (e) {
    await close();
    throw e;
  }
}

export type Line = TapEvent & { id?: string; proxy?: { workload: string } } & Record<string, unknown>;

/** A tap's stream as it arrives: its lines so far, and its end. */
export class TapClient {
  readonly lines: Line[] = [];
  status = 0;
  text = '';
  private readonly req;
  readonly ended: Promise<void>;

  constructor(adminPort: number, query: string, headers: Record<string, string> = {}) {
    let done!: () => void;
    this.ended = new Promise((r) => (done = r));
    this.req = httpRequest({ host: '127.0.0.1', port: adminPort, path: `/api/v1/tap?${query}`, headers }, (res) => {
      this.status = res.statusCode ?? 0;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        this.text += chunk;
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const l = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (this.status === 200 && l) this.lines.push(JSON.parse(l) as Line);
        }
      });
      res.on('close', done);
    });
    this.req.on('error', done);
    this.req.end();
  }

  of(type: string): Line[] {
    return this.lines.filter((l) => l.type === type);
  }

  close(): void {
    this.req.destroy();
  }
}

export async function until<T>(what: string, fn: () => T | undefined | false, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** GET through web's sidecar to Service api, as web's app would. */
export function get(a: Sidecar, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: a.outboundPort, path, method, headers: { host: 'api.shop', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function counterValue(s: Sidecar, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = s.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((n, v) => n + v.value, 0);
}

