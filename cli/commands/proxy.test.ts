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
import { silentLogger } from '../../lib/log.js';
import { freePort } from '../../proxy/identity/testdata/free-port.js';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');
const TOKEN = 'proxy-cli-token-0123456789';

describe('tsmesh proxy (process)', function () {
  this.timeout(60_000);
  let dir: string;
  let plane: RunningControlPlane;
  let child: ChildProcess | undefined;
  let stderr = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-proxy-cli-'));
    const { ca } = await newRootCa();
    writeFileSync(join(dir, 'root-cert.pem'), ca.trustBundle.toPem());
    writeFileSync(join(dir, 'token'), TOKEN);
    writeFileSync(join(dir, 'config.yaml'), 'apiVersion: tsmesh.io/v1alpha1\nkind: ProxyConfig\nversion: "1"\n');
    const authenticator = new TokenFileAuthenticator([{ token: TOKEN, spiffeId: 'spiffe://cluster.local/ns/shop/sa/web' }]);
    plane = await startControlPlane({ authority: ca, authenticator, log: silentLogger, host: '127.0.0.1', port: 0, adminPort: 0 });
  });
  after(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns ready once it holds a certificate and its config, then drains and exits 0 on SIGTERM', async () => {
    const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()];
    child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'proxy', '--config-file', join(dir, 'config.yaml')], {
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
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
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
    assert.equal(ready, 200, stderr);
    const metrics = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    const expiry = Number(/^tsmesh_identity_cert_expiration_timestamp_seconds (\S+)/m.exec(metrics)?.[1]);
    assert.ok(expiry > Date.now() / 1000 + 3000, `expiry ${expiry}`);
    const config = (await (await request(`http://127.0.0.1:${admin}/config`)).body.json()) as { version: string };
    assert.equal(config.version, '1');
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => child!.once('exit', res));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /"msg":"draining"/);
  });

  it('explains a missing config source', async () => {
    const r = spawn(process.execPath, ['--import', 'tsx', MAIN, 'proxy'], { env: { ...process.env, TSMESH_CONFIG_FILE: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    r.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((res) => r.once('exit', res));
    assert.equal(code, 2);
    assert.match(err, /no config source: pass --config-file/);
  });
});
