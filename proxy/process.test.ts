// The proxy process assembled in this process (what `tsmesh proxy` and the
// demo's loopback mode run), on loopback with ports 0: two proxies on config
// files, their certificates from a real CA, a request from one app to the
// other through both over mTLS; stopped, they leave nothing open.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { TokenFileAuthenticator } from '../ca/authn/token-file.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
// eslint-disable-next-line no-restricted-imports -- an integration test: the proxy's CA client against the control plane's CA over TLS
import { startControlPlane, type RunningControlPlane } from '../control/plane.js';
import { silentLogger } from '../lib/log.js';
import { readProxySettings, type ProxySettings } from './env.js';
import { startProxy, type ProxyProcessOptions, type RunningProxy } from './process.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10'; // never dialled: web's app calls its sidecar on an explicit port for it
const TOKENS = { web: 'process-test-web-token-0123', api: 'process-test-api-token-0123' };

/** What holds this process open, as a sorted list: servers, sockets, timers (not a request in flight, such as a file's read or close, which ends by itself). */
const handles = (): string[] =>
  process
    .getActiveResourcesInfo()
    .filter((r) => !r.includes('Req'))
    .sort();

/** Waits until `check` holds, for up to `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('the proxy process (startProxy) on loopback', function () {
  this.timeout(30_000);
  let dir: string;
  let plane: RunningControlPlane;
  let app: HttpServer;
  let agent: Agent;
  let baseline: string[];

  /** The settings a meshed pod's environment gives, with ports 0 and the test's files. */
  const settings = (sa: 'web' | 'api', configFile: string): ProxySettings => ({
    ...readProxySettings({}),
    podNamespace: 'shop',
    serviceAccount: sa,
    controlPlaneAddress: `127.0.0.1:${plane.caPort}`,
    tokenPath: join(dir, `${sa}.token`),
    trustBundlePath: join(dir, 'root-cert.pem'),
    configFile,
    outboundPort: 0,
    inboundPort: 0,
    adminPort: 0,
    drainDuration: '1s',
  });
  const loopback = (sidecar: ProxyProcessOptions['sidecar']): ProxyProcessOptions => ({
    log: silentLogger,
    host: '127.0.0.1',
    identityTuning: { backoff: { minMs: 20, maxMs: 100 } },
    sidecar: {
      outboundOriginalDestination: () => {
        throw new Error('unused: the app calls an explicit outbound port');
      },
      inboundOriginalDestination: () => {
        throw new Error('unused: this proxy has no app');
      },
      ...sidecar,
    },
  });
  const get = async (url: string): Promise<{ status: number; text: string }> => {
    const res = await request(url, { dispatcher: agent, headers: { host: 'api.shop' } });
    return { status: res.statusCode, text: await res.body.text() };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-proxy-process-'));
    const { ca } = await newRootCa();
    writeFileSync(join(dir, 'root-cert.pem'), ca.trustBundle.toPem());
    for (const [sa, token] of Object.entries(TOKENS)) writeFileSync(join(dir, `${sa}.token`), token);
    const authenticator = new TokenFileAuthenticator([
      { token: TOKENS.web, spiffeId: WEB },
      { token: TOKENS.api, spiffeId: API },
    ]);
    plane = await startControlPlane({ authority: ca, authenticator, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0 });
    app = createHttpServer((req, res) => res.end(JSON.stringify({ from: 'api', path: req.url })));
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    agent = new Agent();
    baseline = handles();
  });
  after(async () => {
    await agent?.close();
    app?.close();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns ready, carries a request from one app to the other over mTLS, and stop() leaves nothing open', async () => {
    writeFileSync(join(dir, 'api.yaml'), 'apiVersion: tsmesh.io/v1alpha1\nkind: ProxyConfig\nversion: "api-1"\nmesh: { mtlsMode: STRICT }\n');
    const appPort = (app.address() as AddressInfo).port;
    const api = await startProxy(settings('api', join(dir, 'api.yaml')), loopback({ inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) }));
    let web: RunningProxy | undefined;
    try {
      // web reaches api's one endpoint at api's inbound port, known now that it listens.
      writeFileSync(
        join(dir, 'web.yaml'),
        JSON.stringify({
          apiVersion: 'tsmesh.io/v1alpha1',
          kind: 'ProxyConfig',
          version: 'web-1',
          services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, protocol: 'http', targetPort: api.sidecar.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
        }),
      );
      web = await startProxy(
        settings('web', join(dir, 'web.yaml')),
        loopback({ explicitOutbound: [{ port: 0, destination: { address: SERVICE_IP, port: 80, family: 'IPv4' } }] }),
      );
      assert.equal(web.spiffeId, WEB);
      for (const p of [api, web]) {
        await until(`${p.spiffeId} to be ready`, async () => (await get(`${p.adminUrl}/ready`)).status === 200);
        assert.equal(p.notReadyReason(), undefined);
      }
      const config = JSON.parse((await get(`${web.adminUrl}/config`)).text) as { version: string };
      assert.equal(config.version, 'web-1');

      const r = await get(`http://127.0.0.1:${web.sidecar.explicitOutboundPorts[0]}/orders?id=7`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(JSON.parse(r.text), { from: 'api', path: '/orders?id=7' });
      const inbound = await api.sidecar.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
      assert.match(inbound, new RegExp(`direction="inbound",source_identity="${WEB}",destination_identity="${API}",.*response_code="200",tls="true"`));
    } finally {
      await web?.stop();
      await api.stop();
    }
    const ports = [api, web!].flatMap((p) => [p.adminPort, p.sidecar.inboundPort, p.sidecar.outboundPort, ...p.sidecar.explicitOutboundPorts]);
    for (const port of ports) assert.equal(await accepts(port), false, `port ${port} still accepts`);
    await agent.close();
    agent = new Agent();
    await until('the proxies to leave nothing open', () => handles().join() === baseline.join(), 5000).catch(() =>
      assert.deepEqual(handles(), baseline, 'what the proxies left open'),
    );
  });

  it('refuses a bad setting before anything listens', async () => {
    writeFileSync(join(dir, 'api.yaml'), 'apiVersion: tsmesh.io/v1alpha1\nkind: ProxyConfig\nversion: "1"\n');
    await assert.rejects(startProxy({ ...settings('api', join(dir, 'api.yaml')), drainDuration: 'soon' }, loopback({})), /TSMESH_DRAIN_DURATION/);
    await assert.rejects(startProxy({ ...settings('api', join(dir, 'api.yaml')), requestBodyTimeout: '10 s' }, loopback({})), /TSMESH_REQUEST_BODY_TIMEOUT/);
    await assert.rejects(startProxy({ ...settings('api', join(dir, 'api.yaml')), responseHeadTimeout: 'a minute' }, loopback({})), /TSMESH_RESPONSE_HEAD_TIMEOUT "a minute" is not a duration/);
    await assert.rejects(startProxy(settings('api', join(dir, 'missing.yaml')), loopback({})), /cannot read config file/);
    assert.deepEqual(handles(), baseline);
  });

  it('fails to start on a taken admin port and leaves nothing open', async () => {
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const adminPort = (taken.address() as AddressInfo).port;
      await assert.rejects(startProxy({ ...settings('api', join(dir, 'api.yaml')), adminPort }, loopback({})), /EADDRINUSE/);
    } finally {
      taken.close();
    }
    await until('the failed start to leave nothing open', () => handles().join() === baseline.join(), 5000).catch(() =>
      assert.deepEqual(handles(), baseline, 'what the failed start left open'),
    );
  });
});
