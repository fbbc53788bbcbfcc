// The two paths a request from an app takes to another on loopback, for
// tests that try both: through one sidecar (A, to service legacy.shop,
// whose endpoint is the app itself, without a sidecar) and through a pair
// (A, then B over mTLS, to service api.shop, B in front of the app). Each
// path has an outbound listener of A's own (explicitOutbound), so a test
// picks the path by the port it dials. And an app that answers as a test
// scripts it, byte for byte.
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { CertificateAuthority } from '../../ca/authority.js';
import type { Sidecar } from '../sidecar.js';
import { FixedConfig, loopbackSidecar } from './mesh.js';
import { API, SERVICE_IP, WEB } from './shop.js';

/**
 * An app on a raw node:net server, for answers no HTTP library would send:
 * it reads each request (its head, and a body of its Content-Length) and
 * hands the socket to `answer`; it keeps its connections until told.
 */
export class RawApp {
  readonly sockets = new Set<Socket>();
  /** performance.now() when the last request's last byte was read. */
  lastRequestByteAt = 0;
  readonly server: Server;

  constructor(answer: (s: Socket) => void) {
    this.server = createServer((s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        got += d;
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? 0);
        if (got.length < end + 4 + length) return;
        got = '';
        this.lastRequestByteAt = performance.now();
        answer(s);
      });
    });
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  /** Closes its connections (a test that failed may have left one open). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    this.dropConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The ClusterIP of service legacy.shop, whose endpoint is the app itself; never dialled. */
export const LEGACY_IP = '10.96.0.11';

export const PATHS = ['one sidecar', 'a sidecar pair'] as const;
export type PathName = (typeof PATHS)[number];

type Settings = NonNullable<Parameters<typeof loopbackSidecar>[3]>;

export interface TwoPaths {
  a: Sidecar;
  b: Sidecar;
  /** The port of A's listener for `path`. */
  port(path: PathName): number;
  /** The port of A's listener for the i-th of `through`'s services. */
  throughPort(i: number): number;
  /** Stops A, then B. */
  stop(): Promise<void>;
}

/**
 * B in front of the app on `appPort`, and A with a listener per path.
 * `through`: more services of A through B (given the ClusterIP each stands
 * for, and fields over api.shop's), e.g. one with a TrafficPolicy.
 */
export async function twoPaths(ca: CertificateAuthority, appPort: number, opts: { a?: Settings; through?: { ip: string; service: object }[] } = {}): Promise<TwoPaths> {
  const b = await loopbackSidecar(ca, API, new FixedConfig({}), {
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
  });
  const viaB = (name: string, ip: string, over: object = {}): object => ({
    name,
    namespace: 'shop',
    clusterIPs: [ip],
    ports: [{ port: 80, protocol: 'http', targetPort: b.inboundPort }],
    endpoints: [{ address: '127.0.0.1', identity: API }],
    ...over,
  });
  const through = opts.through ?? [];
  let a: Sidecar;
  try {
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [
          { name: 'legacy', namespace: 'shop', clusterIPs: [LEGACY_IP], ports: [{ port: 80, protocol: 'http', targetPort: appPort }], endpoints: [{ address: '127.0.0.1' }] },
          viaB('api', SERVICE_IP),
          ...through.map((t, i) => viaB(`through-${i}`, t.ip, t.service)),
        ],
      }),
      {
        ...opts.a,
        explicitOutbound: [LEGACY_IP, SERVICE_IP, ...through.map((t) => t.ip)].map((address) => ({ port: 0, destination: { address, port: 80, family: 'IPv4' as const } })),
      },
    );
  } catch (e) {
    await b.drain(0);
    throw e;
  }
  return {
    a,
    b,
    port: (path) => a.explicitOutboundPorts[PATHS.indexOf(path)]!,
    throughPort: (i) => a.explicitOutboundPorts[PATHS.length + i]!,
    stop: async () => {
      await a.drain(0);
      await b.drain(0);
    },
  };
}
