// `tsmesh proxy` as a process: gets its certificate from a real control plane,
// turns ready, serves its admin port, and exits 0 on SIGTERM.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { TokenFileAuthenticator } from '../../ca/authn/token-file.js';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { startControlPlane, type RunningControlPlane } from '../../control/plane.js';
import { FileMeshSource } from '../../control/sources/file.js';
import { silentLogger } from '../../lib/log.js';
import { freePort } from '../../lib/ports.js';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');
const TOKEN = 'proxy-cli-token-0123456789';

describe('tsmesh proxy (process)', function () {
  this.timeout(60_000);
  let dir: string;
  let plane: RunningControlPlane;
  let child: ChildProcess | undefined;
  let meshSource: FileMeshSource | undefined;
  let stderr = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-proxy-cli-'));
    const { ca } = await newRootCa();
    writeFileSync(join(dir, 'root-cert.pem'), ca.trustBundle.toPem());
    writeFileSync(join(dir, 'token'), TOKEN);
    writeFileSync(join(dir, 'config.yaml'), 'apiVersion: tsmesh.io/v1alpha1\nkind: ProxyConfig\nversion: "1"\n');
    writeFileSync(
      join(dir, 'mesh.yaml'),
      'apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nservices:\n  - { name: api, namespace: shop, clusterIPs: [10.96.0.10], ports: [{ port: 80 }], endpoints: [{ address: 10.244.1.5, serviceAccount: api }] }\n',
    );
    meshSource = new FileMeshSource(join(dir, 'mesh.yaml'), silentLogger);
    const authenticator = new TokenFileAuthenticator([{ token: TOKEN, spiffeId: 'spiffe://cluster.local/ns/shop/sa/web' }]);
    plane = await startControlPlane({ authority: ca, authenticator, meshSource, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0 });
  });
  after(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    meshSource?.close();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startProxy(args: string[]): Promise<{ admin: number; proc: ChildProcess }> {
    const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()];
    stderr = '';
    const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, 'proxy', ...args], {
      env: {
        ...process.env,
        TSMESH_CONTROL_PLANE_ADDRESS: `127.0.0.1:${plane.caPort}`,
        TSMESH_TOKEN_PATH: join(dir, 'token'),
        TSMESH_TRUST_BUNDLE_PATH: join(dir, 'root-cert.pem'),
        TSMESH_POD_NAMESPACE: 'shop',
        TSMESH_SERVICE_ACCOUNT: 'web',
        TSMESH_OUTBOUND_PORT: String(outbound),
        TSMESH_INBOUND_PORT: String(inbound),
        TSMESH_ADMIN_PORT: String(admin),
        TSMESH_DRAIN_DURATION: '1s',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    return { admin, proc };
  }

  async function waitReady(admin: number): Promise<number> {
    const deadline = Date.now() + 30_000;
    let ready = 0;
    while (Date.now() < deadline) {
      const r = await request(`http://127.0.0.1:${admin}/ready`).catch(() => undefined);
      if (r) {
        ready = r.statusCode;
        await r.body.dump();
        if (ready === 200) break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    return ready;
  }

  it('turns ready once it holds a certificate and its config, then drains and exits 0 on SIGTERM', async () => {
    const { admin, proc } = await startProxy(['--config-file', join(dir, 'config.yaml')]);
    const ready = await waitReady(admin);
    assert.equal(ready, 200, stderr);
    const metrics = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    const expiry = Number(/^tsmesh_identity_cert_expiration_timestamp_seconds (\S+)/m.exec(metrics)?.[1]);
    assert.ok(expiry > Date.now() / 1000 + 3000, `expiry ${expiry}`);
    const config = (await (await request(`http://127.0.0.1:${admin}/config`)).body.json()) as { version: string };
    assert.equal(config.version, '1');
    proc.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => proc.once('exit', res));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /"msg":"draining"/);
  });

  it('without --config-file, runs on the control plane\'s discovery stream', async () => {
    const { admin, proc } = await startProxy([]);
    assert.equal(await waitReady(admin), 200, stderr);
    const config = (await (await request(`http://127.0.0.1:${admin}/config`)).body.json()) as { services: { name: string; endpoints: { identity: string }[] }[] };
    assert.equal(config.services[0]!.name, 'api');
    assert.equal(config.services[0]!.endpoints[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/api');
    proc.kill('SIGTERM');
    assert.equal(await new Promise<number | null>((res) => proc.once('exit', res)), 0);
  });

  it('explains a bad setting and exits non-zero', async () => {
    const r = spawn(process.execPath, ['--import', 'tsx', MAIN, 'proxy'], { env: { ...process.env, TSMESH_INBOUND_PORT: 'abc' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    r.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((res) => r.once('exit', res));
    assert.equal(code, 1);
    assert.match(err, /TSMESH_INBOUND_PORT="abc" is not a port/);
  });
});
