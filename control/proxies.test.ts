// `tsmesh proxy-status` and `tsmesh proxy-config` against a control plane
// process in local mode (a token file, a Mesh file) on loopback, with a real
// proxy process that gets its certificate and config from it and
// acknowledges each config, and a subscriber that holds a mesh certificate
// but acknowledges only when the test says (a proxy that lags: a raw HTTPS
// client, as no proxy can be told to hold its acknowledgements back). The
// commands run as an operator runs them, as child processes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { writeRootCa } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { silentLogger } from '../lib/log.js';
import { waitFor } from '../lib/netns.js';
import type { RunningProxy } from '../proxy/process.js';
import { issueCredentials, startLoopbackProxy } from '../proxy/testdata/mesh.js';
import { startControlPlaneProcess, type ControlPlaneProcess } from './process.js';
import { fetchAdminJson } from './admin-client.js';
import { NOT_SERVED, PROXIES_PATH, type ProxyConfigAnswer, type ProxyStatus, type ProxyStatusList } from './proxies.js';

const MAIN = resolve(import.meta.dirname, '..', 'cli', 'main.ts');
const TOKEN = 'proxy-status-test-token-0123456';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const LAGGARD = 'spiffe://cluster.local/ns/shop/sa/batch';
const POD = 'web-7d9f8-x2k4q';

const meshFile = (endpoints: string): string =>
  `apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nservices:\n  - { name: api, namespace: shop, clusterIPs: [10.96.0.10], ports: [{ port: 80 }], endpoints: [${endpoints}] }\n`;

function tsmesh(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, out, err) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

describe('tsmesh proxy-status and proxy-config against a control plane in local mode', function () {
  this.timeout(120_000);
  let dir: string;
  let plane: ControlPlaneProcess;
  let proxy: RunningProxy;
  let laggard: { versions: string[]; ack: (version: string) => Promise<number>; close: () => void };
  let address: string;
  const status = async (): Promise<Map<string, ProxyStatus>> => new Map((await fetchAdminJson<ProxyStatusList>(address, PROXIES_PATH, NOT_SERVED)).proxies.map((p) => [p.serviceAccount, p]));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-proxy-status-'));
    await writeRootCa(dir, await createRootCa('cluster.local'));
    writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n  - token: ${TOKEN}\n    spiffeId: ${WEB}\n`);
    writeFileSync(join(dir, 'token'), TOKEN);
    writeFileSync(join(dir, 'mesh.yaml'), meshFile('{ address: 10.244.1.5, serviceAccount: api }'));
    plane = await startControlPlaneProcess({ log: silentLogger, caDir: dir, tokenFile: join(dir, 'tokens.yaml'), meshFile: join(dir, 'mesh.yaml'), host: '127.0.0.1', port: 0, adminPort: 0 });
    address = plane.adminAddress;
    proxy = await startLoopbackProxy(`127.0.0.1:${plane.caPort}`, dir, 'web', POD);
    // The laggard: subscribes with a mesh certificate, reads configs, acknowledges only when told.
    const creds = issueCredentials(plane.authority, LAGGARD);
    const tls = { host: '127.0.0.1', port: plane.caPort, key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem, agent: false } as const;
    const versions: string[] = [];
    const stream = await new Promise<IncomingMessage>((ok, fail) => httpsRequest({ ...tls, path: '/v1/config' }, ok).once('error', fail).end());
    let buffered = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl; (nl = buffered.indexOf('\n')) >= 0; buffered = buffered.slice(nl + 1)) {
        const line = buffered.slice(0, nl);
        if (line.trim()) versions.push((JSON.parse(line) as { version: string }).version);
      }
    });
    laggard = {
      versions,
      ack: (version) =>
        new Promise((ok, fail) => {
          const body = JSON.stringify({ version });
          httpsRequest({ ...tls, path: '/v1/config/ack', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
            res.resume();
            ok(res.statusCode ?? 0);
          })
            .once('error', fail)
            .end(body);
        }),
      close: () => stream.destroy(),
    };
  });
  after(async () => {
    laggard?.close();
    await proxy?.stop();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the proxy that acknowledged its config SYNCED, with that version, its pod, address and certificate expiry; the one that did not, NOT ACKED', async () => {
    await waitFor('the proxy to be ready', async () => proxy.notReadyReason() === undefined || undefined, 15_000);
    const version = proxy.sidecar.config()!.version;
    const web = await waitFor('the proxy to acknowledge', async () => {
      const p = (await status()).get('web');
      return p?.sync === 'SYNCED' ? p : undefined;
    }, 15_000);
    assert.equal(web.ackedVersion, version);
    assert.equal(web.sentVersion, version);
    assert.equal(web.pod, POD);
    assert.equal(web.identity, 'shop/web');
    assert.equal(web.address, '127.0.0.1');
    assert.equal(web.certExpiresAt, proxy.identity.current()!.notAfter.toISOString().replace(/\.\d{3}Z$/, '.000Z'));
    assert.ok(Date.parse(web.ackedAt!) <= Date.now() && Date.parse(web.lastSeen) >= Date.parse(web.ackedAt!));
    const lag = (await status()).get('batch')!;
    assert.equal(lag.sync, 'NOT ACKED');
    assert.equal(lag.sentVersion, laggard.versions.at(-1));
    assert.equal(lag.ackedVersion, null);
    assert.equal(lag.pod, null);

    const table = await tsmesh('proxy-status', '--admin-address', address);
    assert.equal(table.code, 0, table.err);
    const rows = table.out.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(rows[0], ['NAME', 'IDENTITY', 'ADDRESS', 'SYNC', 'SENT', 'ACKED', 'ACKED_AT', 'CERT_EXPIRES', 'LAST_SEEN']);
    assert.deepEqual(rows[1]!.slice(0, 6), ['batch', 'shop/batch', '127.0.0.1', 'NOT ACKED', lag.sentVersion, '-']);
    assert.deepEqual(rows[2]!.slice(0, 6), [POD, 'shop/web', '127.0.0.1', 'SYNCED', version, version]);
    assert.match(rows[2]![7]!, /^in \d+m$/, 'the certificate expires in about an hour');
    assert.match(table.out, /knows only the proxies connected to it/, 'says what a replica knows');
    const json = await tsmesh('proxy-status', '-o', 'json', '--admin-address', address);
    assert.equal(json.code, 0, json.err);
    assert.deepEqual((JSON.parse(json.out) as ProxyStatusList).proxies.map((p) => [p.serviceAccount, p.sync]), [['batch', 'NOT ACKED'], ['web', 'SYNCED']]);
  });

  it('shows a proxy that acknowledged an older config than the last sent STALE, and the other SYNCED on the new version', async () => {
    const first = laggard.versions[0]!;
    writeFileSync(join(dir, 'mesh.yaml'), meshFile('{ address: 10.244.1.5, serviceAccount: api }, { address: 10.244.1.6, serviceAccount: api }'));
    await waitFor('a second config to reach the laggard', async () => (laggard.versions.length >= 2 ? true : undefined), 15_000);
    assert.equal(await laggard.ack(first), 204);
    const after = await waitFor('the proxy to acknowledge the new config', async () => {
      const s = await status();
      return s.get('web')?.ackedVersion === laggard.versions.at(-1) && s.get('batch')?.ackedVersion === first ? s : undefined;
    }, 15_000);
    assert.equal(after.get('web')!.sync, 'SYNCED');
    assert.equal(after.get('batch')!.sync, 'STALE');
    assert.equal(after.get('batch')!.sentVersion, laggard.versions.at(-1));
  });

  it('proxy-config: the acknowledged config by pod name, ServiceAccount or namespace/ServiceAccount, as a summary or whole; a clear error for an unknown proxy', async () => {
    const version = proxy.sidecar.config()!.version;
    const summary = await tsmesh('proxy-config', POD, '--admin-address', address);
    assert.equal(summary.code, 0, summary.err);
    assert.match(summary.out, new RegExp(`^Proxy: +${POD} \\(shop/web, 127\\.0\\.0\\.1\\)$`, 'm'));
    assert.match(summary.out, new RegExp(`^Version: +${version} acknowledged \\d+s ago; SYNCED$`, 'm'));
    assert.match(summary.out, /^mTLS: +STRICT \(mesh\)$/m);
    assert.match(summary.out, /^api\.shop +80\/auto +2 +- +default$/m);
    // In local mode a workload is its ServiceAccount: `web` names it.
    const yaml = await tsmesh('proxy-config', 'web', '-o', 'yaml', '--admin-address', address);
    assert.equal(yaml.code, 0, yaml.err);
    const answer = parseYaml(yaml.out) as ProxyConfigAnswer;
    assert.equal(answer.config!.version, version);
    assert.deepEqual(answer.config!.services[0]!.endpoints.map((e) => e.address), ['10.244.1.5', '10.244.1.6']);
    assert.deepEqual(answer.config, JSON.parse(JSON.stringify(proxy.sidecar.config())), 'the config the proxy runs');
    // The laggard acknowledged a config it is no longer sent: what it runs is not held.
    const stale = await tsmesh('proxy-config', 'shop/batch', '--admin-address', address);
    assert.equal(stale.code, 0, stale.err);
    assert.match(stale.out, /STALE \(last sent .+\)\n\nIt runs an older config than the last sent/);
    const unknown = await tsmesh('proxy-config', 'nobody', '--admin-address', address);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /no proxy connected to this control plane is "nobody"; connected: shop\/batch@127\.0\.0\.1, web-7d9f8-x2k4q/);
    const none = await tsmesh('proxy-config', '--admin-address', address);
    assert.equal(none.code, 2);
    assert.match(none.err, /name the proxy/);
  });
});
