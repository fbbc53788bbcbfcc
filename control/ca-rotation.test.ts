// A live root rotation under continuous load, on loopback with real TLS: a
// control plane in local mode (as `tsmesh control-plane --ca-dir` and the
// demo run it), a client sidecar and a server sidecar (real mTLS between
// them, each a proxy process of proxy/process.ts in this process), and about
// 100 requests a second through them, half on kept-alive connections and
// half each on a new one, plus a new mTLS handshake between the two sidecars'
// own credentials every 50 ms. The rotation is the two writes `tsmesh ca
// rotate start` and `finish` make into the CA folder; between them the
// control plane moves every proxy onto the new root. Not one request or
// handshake may fail, and at the end the old root is trusted by no one.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../ca/authority.js';
import { buildCsrPem } from '../ca/csr.js';
import { CA_FILES, issuingRoot, readCaFiles, readCaMaterial, writeRootCa } from '../ca/material.js';
import { createRootCa } from '../ca/root.js';
import { finishRotation, startRotation, writeRotationStep } from '../ca/rotation-files.js';
import { splitPemCertificates } from '../ca/der.js';
import { silentLogger } from '../lib/log.js';
import { waitFor } from '../lib/netns.js';
import { freePort } from '../lib/ports.js';
import { readProxySettings } from '../proxy/env.js';
import { startProxy, type RunningProxy } from '../proxy/process.js';
import { MESH_ALPN } from '../proxy/tls/alpn.js';
import { Registry } from 'prom-client';
import { CaRotation, type CaStatus } from './ca-rotation.js';
import { startControlPlaneProcess, type ControlPlaneProcess } from './process.js';

const TD = 'cluster.local';
const CLIENT = `spiffe://${TD}/ns/shop/sa/web`;
const SERVER = `spiffe://${TD}/ns/shop/sa/api`;

/** Polls `get` (every 50 ms) until it gives a value. */
const until = <T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> => waitFor(what, async () => get(), ms, 50);

const rootsOf = (pem: string): string[] => splitPemCertificates(pem).map((p) => new X509Certificate(p).fingerprint256);

describe('live root rotation under load (control plane in local mode, two sidecars, real mTLS)', function () {
  this.timeout(120_000);
  let dir: string;
  let plane: ControlPlaneProcess | undefined;
  const proxies: RunningProxy[] = [];
  let app: Server | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-rotation-'));
    await writeRootCa(dir, await createRootCa(TD));
  });
  afterEach(async () => {
    for (const p of proxies.splice(0)) await p.stop();
    await plane?.close();
    plane = undefined;
    app?.closeAllConnections();
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const restart of [false, true])
    it(
      restart
        ? 'carries on after a control plane restart mid-rotation (the phase is in the CA folder), still with zero failed requests'
        : 'moves every proxy to a new root with zero failed requests, then trusts the old root nowhere',
      () => rotateUnderLoad(restart),
    );

  async function rotateUnderLoad(restart: boolean): Promise<void> {
    const oldMaterial = await readCaMaterial(dir);
    const oldRoot = issuingRoot(oldMaterial.current);
    const serverInbound = await freePort();
    writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n  - token: web-token-0123456789\n    spiffeId: ${CLIENT}\n  - token: api-token-0123456789\n    spiffeId: ${SERVER}\n`);
    writeFileSync(join(dir, 'web.token'), 'web-token-0123456789');
    writeFileSync(join(dir, 'api.token'), 'api-token-0123456789');
    writeFileSync(
      join(dir, 'mesh.yaml'),
      `apiVersion: tsmesh.io/v1alpha1\nkind: Mesh\nmesh: { trustDomain: ${TD}, mtlsMode: STRICT }\nservices:\n  - { name: api, namespace: shop, clusterIPs: [10.96.0.10], ports: [{ port: 80, name: http, protocol: http, targetPort: ${serverInbound} }], endpoints: [{ address: 127.0.0.1, serviceAccount: api }] }\n`,
    );
    const startPlane = (port = 0, adminPort = 0): Promise<ControlPlaneProcess> =>
      startControlPlaneProcess({
        log: silentLogger,
        caDir: dir,
        tokenFile: join(dir, 'tokens.yaml'),
        meshFile: join(dir, 'mesh.yaml'),
        host: '127.0.0.1',
        port,
        adminPort,
        caPollMs: 250,
      });
    plane = await startPlane();
    app = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    const proxy = (sa: string, inboundPort: number, sidecar: object) =>
      startProxy(
        {
          ...readProxySettings({}),
          podNamespace: 'shop',
          serviceAccount: sa,
          trustDomain: TD,
          controlPlaneAddress: `127.0.0.1:${plane!.caPort}`,
          tokenPath: join(dir, `${sa}.token`),
          trustBundlePath: join(dir, CA_FILES.rootCert),
          outboundPort: 0,
          inboundPort,
          adminPort: 0,
          drainDuration: '1s',
        },
        { log: silentLogger, host: '127.0.0.1', identityTuning: { backoff: { minMs: 20, maxMs: 100 }, renewNowSpreadMs: 500 }, sidecar },
      );
    const server = await proxy('api', serverInbound, { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    proxies.push(server);
    const client = await proxy('web', 0, {
      outboundOriginalDestination: () => {
        throw new Error('the client calls its sidecar on an explicit port');
      },
      explicitOutbound: [{ port: 0, destination: { address: '10.96.0.10', port: 80, family: 'IPv4' as const } }],
    });
    proxies.push(client);
    await until('both sidecars to be ready', () => (proxies.every((p) => p.notReadyReason() === undefined) ? true : undefined));
    await until('both sidecars to hold the config', () => (proxies.every((p) => p.sidecar.config()?.trustBundle) ? true : undefined));
    let lastLog = 0;
    const caStatus = async (): Promise<CaStatus> => {
      const s = (await (await fetch(`http://${plane!.adminAddress}/api/v1/ca`)).json()) as CaStatus;
      if (process.env.DEBUG_ROTATION && Date.now() - lastLog > 2000) {
        lastLog = Date.now();
        console.log(JSON.stringify({ ...s, roots: s.roots.map((r) => [r.fingerprint.slice(0, 8), r.role]) }));
      }
      return s;
    };
    assert.equal((await caStatus()).phase, 'steady');

    // The load: every 10 ms a request, alternately on a kept-alive connection and on a new one.
    const outbound = `http://127.0.0.1:${client.sidecar.explicitOutboundPorts[0]}/`;
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 4 });
    const failures: string[] = [];
    let ok = 0;
    let handshakes = 0;
    const inFlight = new Set<Promise<void>>();
    const call = (fresh: boolean): Promise<void> =>
      new Promise<void>((resolve) => {
        const req = httpRequest(outbound, { agent: fresh ? false : keepAlive, headers: fresh ? { connection: 'close' } : {}, timeout: 10_000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => {
            if (res.statusCode === 200 && body === 'ok') ok++;
            else failures.push(`${fresh ? 'new' : 'kept'} connection: ${res.statusCode} ${String(res.headers['x-tsmesh-error'] ?? '')} ${body.slice(0, 200)}`);
            resolve();
          });
        });
        req.on('error', (e) => {
          failures.push(`${fresh ? 'new' : 'kept'} connection: ${e.message}`);
          resolve();
        });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.end();
      });
    // A new mTLS handshake from the client sidecar's credentials in force to the server sidecar.
    const handshake = (material: { key: string; cert: string; ca: string }): Promise<string | undefined> =>
      new Promise((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: serverInbound, ...material, ALPNProtocols: [MESH_ALPN.http1], checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
        s.setTimeout(5000, () => s.destroy(new Error('handshake timed out')));
        // TLS 1.3: the server refuses a client certificate after the client's handshake ends; a round trip shows it.
        s.once('secureConnect', () => {
          s.write('GET / HTTP/1.1\r\nhost: api\r\n\r\n');
          s.once('data', () => {
            s.destroy();
            resolve(undefined);
          });
        });
        s.once('error', (e) => resolve(e.message));
        s.once('close', () => resolve('closed before an answer'));
      });
    let stopped = false;
    const loadStart = Date.now();
    const tick = setInterval(() => {
      if (stopped) return;
      for (const fresh of [false, true]) {
        const p = call(fresh);
        inFlight.add(p);
        void p.then(() => inFlight.delete(p));
      }
    }, 20);
    const probe = setInterval(() => {
      const material = client.sidecar.meshTls.clientMaterial();
      if (stopped || !material) return;
      const p = handshake(material).then((error) => {
        handshakes++;
        if (error) failures.push(`mTLS handshake: ${error}`);
      });
      inFlight.add(p);
      void p.then(() => inFlight.delete(p));
    }, 50);
    try {
      await new Promise((r) => setTimeout(r, 1000));

      // tsmesh ca rotate start: the new root beside the old, the new root's key as the material to come.
      const before = await readCaFiles(dir);
      const start = await startRotation(before, { trustDomain: TD, overlapSeconds: 1 });
      const newRoot = new X509Certificate(start.newRoot!.certPem).fingerprint256;
      await writeRotationStep(dir, before, start);
      const trusting = await until('the control plane to trust both roots', async () => {
        const s = await caStatus();
        return s.roots.length === 2 ? s : undefined;
      });
      assert.deepEqual(trusting.roots.map((r) => r.role).sort(), ['next', 'signing']);
      if (restart) {
        // A new process on the same ports: it reads the rotation from the folder and starts from trusting-new.
        const { caPort, adminPort } = plane!;
        await plane!.close();
        plane = await startPlane(caPort, adminPort);
        assert.notEqual((await caStatus()).phase, 'steady');
      }
      // Every proxy trusts both roots before anything chains to the new one.
      await until('both proxies to trust both roots', () =>
        proxies.every((p) => {
          const roots = rootsOf(p.sidecar.meshTls.trustedRootsPem() ?? '');
          return roots.includes(oldRoot) && roots.includes(newRoot);
        })
          ? true
          : undefined,
      );
      const ready = await until('every proxy to hold a certificate of the new root', async () => {
        const s = await caStatus();
        return s.phase === 'ready-to-retire' ? s : undefined;
      });
      assert.equal(ready.signingRoot, newRoot);
      assert.deepEqual(ready.retiredRoots, [oldRoot]);
      for (const p of proxies) assert.equal(p.sidecar.meshTls.certificateRoot, newRoot, `${p.spiffeId} renewed onto the new root`);

      // tsmesh ca rotate finish: the old root leaves the bundle.
      const midway = await readCaFiles(dir);
      await writeRotationStep(dir, midway, finishRotation(midway));
      await until('the control plane to hold the new root alone', async () => {
        const s = await caStatus();
        return s.phase === 'steady' && s.roots.length === 1 && s.roots[0]!.fingerprint === newRoot ? true : undefined;
      });
      await until('both proxies to trust the new root alone', () => (proxies.every((p) => rootsOf(p.sidecar.meshTls.trustedRootsPem() ?? '').join() === newRoot) ? true : undefined));
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      stopped = true;
      clearInterval(tick);
      clearInterval(probe);
      await Promise.all(inFlight);
      keepAlive.destroy();
    }
    const seconds = (Date.now() - loadStart) / 1000;
    console.log(`      rotation under load: ${ok} requests (${Math.round(ok / seconds)}/s) and ${handshakes} new mTLS handshakes in ${seconds.toFixed(1)} s, ${failures.length} failed`);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${ok + failures.length} requests and handshakes failed`);
    assert.ok(ok > 200, `only ${ok} requests went through`);
    assert.ok(handshakes > 50, `only ${handshakes} handshakes were tried`);

    // Every proxy's view: a certificate of the new root, the new root alone in its config's bundle.
    for (const p of proxies) {
      const config = (await (await fetch(`${p.adminUrl}/config`)).json()) as { trustBundle?: string };
      assert.deepEqual(rootsOf(config.trustBundle ?? ''), [rootsOf((await readCaFiles(dir))[CA_FILES.rootCert]!)[0]], `${p.spiffeId}'s /config`);
      assert.notEqual(p.sidecar.meshTls.certificateRoot, oldRoot);
    }
    // A certificate of the old root alone is refused by the server sidecar now.
    const oldCa = new CertificateAuthority({ trustDomain: TD, ...oldMaterial.current });
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const issued = oldCa.signWorkloadCsr(buildCsrPem(key, CLIENT), CLIENT);
    const refused = await handshake({ key: key.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: issued.trustBundlePem + client.sidecar.meshTls.trustedRootsPem()! });
    assert.ok(refused !== undefined, 'a handshake with a certificate of the old root is refused');
    // While the client's own credentials still get through.
    assert.equal(await handshake(client.sidecar.meshTls.clientMaterial()!), undefined);
  }
});

describe('CaRotation: a change of the CA folder that does not hold together', function () {
  this.timeout(20_000);
  let dir: string;
  let rotation: CaRotation | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-refuse-'));
    await writeRootCa(dir, await createRootCa(TD));
  });
  after(() => {
    rotation?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is refused loudly and the last good material stays in force', async () => {
    const material = await readCaMaterial(dir);
    const authority = new CertificateAuthority({ trustDomain: TD, ...material.current });
    const registry = new Registry();
    const errors: string[] = [];
    const log = { ...silentLogger, error: (msg: string, fields?: Record<string, unknown>) => errors.push(`${msg}: ${String(fields?.error)}`), child: () => log };
    rotation = new CaRotation({ dir, authority, material, log: log as typeof silentLogger, registry });
    const signing = authority.issuerRoot.fingerprint256;
    const good = readFileSync(join(dir, CA_FILES.rootKey), 'utf8');
    const other = await createRootCa(TD);

    // A key of another certificate.
    writeFileSync(join(dir, CA_FILES.rootKey), other.keyPem);
    await rotation.reload();
    assert.match(rotation.status().refused?.error ?? '', /root-key.pem belongs to none of the roots/);
    assert.equal(authority.issuerRoot.fingerprint256, signing);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /refused a change of the CA material; the last good material stays in force/);

    // A bundle that drops the root in use (with a key that fits what is left).
    writeFileSync(join(dir, CA_FILES.rootCert), other.certPem);
    await rotation.reload();
    assert.match(rotation.status().refused?.error ?? '', /drops the root the CA signs under/);
    assert.equal(authority.issuerRoot.fingerprint256, signing);
    assert.deepEqual(authority.trustBundle.fingerprints(), [signing]);
    assert.match(await registry.metrics(), /tsmesh_ca_material_reloads_total\{result="refused"\} 2/);

    // Put back: taken, nothing refused any more.
    writeFileSync(join(dir, CA_FILES.rootCert), material.trustBundle.toPem());
    writeFileSync(join(dir, CA_FILES.rootKey), good);
    await rotation.reload();
    assert.equal(rotation.status().refused, undefined);
    assert.match(await registry.metrics(), new RegExp(`tsmesh_ca_root_expiration_timestamp_seconds\\{fingerprint="${signing}",role="signing"\\} \\d+`));
    assert.match(await registry.metrics(), /tsmesh_ca_rotation_phase\{phase="steady"\} 1/);
  });
});
