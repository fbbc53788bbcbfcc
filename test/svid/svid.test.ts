// X.509-SVID validation judged three ways on one corpus of certificates
// (corpus.ts): by go-spiffe (test/svid/verify, built by `npm run test:svid`),
// by a real TLS connection into a real sidecar's inbound listener presenting
// each certificate as its client certificate, and by a real sidecar's
// outbound connection to a server presenting it. The verdicts must agree with
// each other and with the SPIFFE specifications, and every refusal is counted
// and logged with its reason. The table is printed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { CertificateAuthority } from '../../ca/authority.js';
import { createIntermediateCa, createRootCa, type CaKeyPair } from '../../ca/root.js';
import { caFromRoot, TD } from '../../ca/testdata/fixtures.js';
import { isSpiffeId } from '../../contract/spiffe.js';
import { createLogger } from '../../lib/log.js';
import { startSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { MESH_ALPN } from '../../proxy/tls/alpn.js';
import { FixedConfig, FixedIdentity, issueCredentials } from '../../proxy/testdata/mesh.js';
import { startOkApp } from '../../proxy/testdata/shop.js';
import { buildCorpus, type CorpusCert } from './corpus.js';

const here = dirname(fileURLToPath(import.meta.url));
const SERVER = `spiffe://${TD}/ns/demo/sa/server`;
const CLIENT = `spiffe://${TD}/ns/demo/sa/client`;
const GOOD = `spiffe://${TD}/ns/demo/sa/a`;
const PEER_IP = '10.96.0.20';
const PEER_PORT = 7000;
const GREETING = 'hello from the peer';

/** The go-spiffe judge, when built (test/svid/build.sh). */
function judgeBinary(): string | undefined {
  const bin = join(process.env['TSMESH_SVID_CACHE'] ?? join(here, '.cache'), 'bin', 'svid-verify');
  try {
    accessSync(bin, constants.X_OK);
    return bin;
  } catch {
    return undefined;
  }
}

interface GoVerdict {
  name: string;
  accepted: boolean;
  id?: string;
  error?: string;
}

function goSpiffeVerdicts(bin: string, bundlePem: string, corpus: readonly CorpusCert[]): Map<string, GoVerdict> {
  const input = { trustDomain: TD, bundle: bundlePem, certs: corpus.map((c) => ({ name: c.name, chain: c.chainPem, key: c.keyPem })) };
  const r = spawnSync(bin, [], { input: JSON.stringify(input), encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `svid-verify exited ${r.status}: ${r.stderr}`);
  return new Map((JSON.parse(r.stdout) as GoVerdict[]).map((v) => [v.name, v]));
}

/** What came back on `socket` before it closed (at most 5 s). */
async function readAll(socket: TLSSocket | Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  // A refused handshake ends in an error (a reset, an alert): the verdict is what arrived, so errors only close.
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), 5000);
  await new Promise((resolve) => socket.once('close', resolve));
  clearTimeout(timer);
  return Buffer.concat(chunks).toString('latin1');
}

interface Row {
  cert: CorpusCert;
  go: GoVerdict | undefined;
  inbound: boolean;
  inboundReason: string;
  outbound: boolean;
  outboundReason: string;
}

describe('X.509-SVID validation: go-spiffe, the inbound and outbound handshakes and the specifications agree', function () {
  this.timeout(120_000);
  let root: CaKeyPair;
  let ca: CertificateAuthority;
  let corpus: CorpusCert[];
  let app: HttpServer;
  let server: Sidecar;
  let client: Sidecar;
  let clientConfig: FixedConfig;
  let peer: TlsServer;
  const logs: { level: string; msg: string; [k: string]: unknown }[] = [];
  const rows: Row[] = [];

  before(async () => {
    const [mesh, foreignRoot] = await Promise.all([createRootCa(TD), createRootCa(TD)]);
    root = mesh;
    ca = caFromRoot(root);
    const intermediate = await createIntermediateCa(root, TD);
    corpus = buildCorpus({ root, ca, intermediate, foreignRoot, trustDomain: TD });
    let appPort: number;
    ({ server: app, port: appPort } = await startOkApp());
    const log = createLogger('svid', 'info', (line) => logs.push(JSON.parse(line) as (typeof logs)[number]));
    server = await startSidecar({
      identity: new FixedIdentity(issueCredentials(ca, SERVER)),
      config: new FixedConfig({ mesh: { mtlsMode: 'STRICT' } }),
      log,
      host: '127.0.0.1',
      outboundPort: 0,
      inboundPort: 0,
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    // The peer of the outbound side: presents the certificate under test, greets, and closes.
    peer = createTlsServer({ ...server.meshTls.options(), ALPNProtocols: [MESH_ALPN.tcp] }, (s) => {
      s.on('error', () => s.destroy());
      s.end(GREETING);
    });
    peer.on('tlsClientError', () => undefined);
    peer.listen(0, '127.0.0.1');
    await once(peer, 'listening');
    clientConfig = new FixedConfig({});
    client = await startSidecar({
      identity: new FixedIdentity(issueCredentials(ca, CLIENT)),
      config: clientConfig,
      log,
      host: '127.0.0.1',
      outboundPort: 0,
      inboundPort: 0,
      outboundOriginalDestination: () => ({ address: PEER_IP, port: PEER_PORT, family: 'IPv4' }),
    });
  });
  after(async () => {
    await Promise.all([server?.drain(0), client?.drain(0)]);
    peer?.close();
    app?.close();
  });

  async function refusals(s: Sidecar, direction: string): Promise<Map<string, number>> {
    const values = (await s.metrics.connectionsRefused.get()).values.filter((v) => v.labels.direction === direction);
    return new Map(values.map((v) => [String(v.labels.reason), v.value]));
  }
  const counted = (before: Map<string, number>, after: Map<string, number>): string =>
    [...after].filter(([reason, n]) => n > (before.get(reason) ?? 0)).map(([reason]) => reason).join(',');

  /** A mesh client presenting `c` to the server sidecar's inbound port: does its request reach the app? */
  async function inbound(c: CorpusCert): Promise<{ accepted: boolean; reason: string }> {
    const before = await refusals(server, 'inbound');
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: server.inboundPort,
      key: c.keyPem,
      cert: c.chainPem,
      ca: root.certPem,
      ALPNProtocols: [MESH_ALPN.http1],
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: server.demo\r\nconnection: close\r\n\r\n'));
    const answer = await readAll(socket);
    return { accepted: /^HTTP\/1\.1 200 /.test(answer) && answer.endsWith('ok'), reason: counted(before, await refusals(server, 'inbound')) };
  }

  /** The client sidecar dialling a peer that presents `c`, expecting the ID `c` names: does the peer's greeting come back? */
  async function outbound(c: CorpusCert): Promise<{ accepted: boolean; reason: string }> {
    peer.setSecureContext({ key: c.keyPem, cert: c.chainPem });
    const identity = c.uri !== undefined && isSpiffeId(c.uri) ? c.uri : GOOD;
    clientConfig.set({
      services: [
        {
          name: 'peer',
          namespace: 'demo',
          clusterIPs: [PEER_IP],
          ports: [{ port: PEER_PORT, name: 'tcp', protocol: 'tcp', targetPort: (peer.address() as AddressInfo).port }],
          endpoints: [{ address: '127.0.0.1', identity }],
        },
      ],
    });
    const before = await refusals(client, 'outbound');
    const answer = await readAll(netConnect(client.outboundPort, '127.0.0.1'));
    return { accepted: answer === GREETING, reason: counted(before, await refusals(client, 'outbound')) };
  }

  it('judges every certificate of the corpus alike', async function () {
    const bin = judgeBinary();
    const go = bin ? goSpiffeVerdicts(bin, root.certPem, corpus) : undefined;
    if (!go) console.log('      go-spiffe: SKIPPED (no test/svid/.cache/bin/svid-verify; `npm run test:svid` builds it where Go is installed)');
    for (const cert of corpus) {
      const i = await inbound(cert);
      const o = await outbound(cert);
      rows.push({ cert, go: go?.get(cert.name), inbound: i.accepted, inboundReason: i.reason, outbound: o.accepted, outboundReason: o.reason });
    }
    const verdict = (b: boolean | undefined): string => (b === undefined ? '-' : b ? 'accept' : 'refuse');
    const table = [
      ['certificate', 'spec', 'go-spiffe', 'inbound', 'outbound', 'counted (in / out)', 'rule'],
      ...rows.map((r) => [
        r.cert.name,
        verdict(r.cert.valid),
        verdict(r.go?.accepted),
        verdict(r.inbound),
        verdict(r.outbound),
        `${r.inboundReason || '-'} / ${r.outboundReason || '-'}`,
        r.cert.why,
      ]),
    ];
    const widths = table[0]!.map((_, col) => Math.max(...table.map((line) => line[col]!.length)));
    console.log(table.map((line) => '      ' + line.map((cell, col) => cell.padEnd(widths[col]!)).join('  ')).join('\n'));
    const disagreements = rows.filter((r) => r.inbound !== r.cert.valid || r.outbound !== r.cert.valid || (r.go !== undefined && r.go.accepted !== r.cert.valid));
    assert.deepEqual(
      disagreements.map((r) => `${r.cert.name}: spec ${verdict(r.cert.valid)}, go-spiffe ${verdict(r.go?.accepted)} (${r.go?.error ?? ''}), inbound ${verdict(r.inbound)}, outbound ${verdict(r.outbound)}`),
      [],
    );
    // Every certificate that passes names the same workload, for go-spiffe as for the outbound check (it expects GOOD).
    for (const r of rows) if (r.go?.accepted) assert.equal(r.go.id, GOOD, r.cert.name);
  });

  it('counts every refusal in both directions with its reason, and logs why', function () {
    assert.ok(rows.length > 0, 'the corpus was judged first');
    for (const r of rows.filter((x) => !x.cert.valid)) {
      assert.notEqual(r.inboundReason, '', `${r.cert.name}: the inbound refusal was not counted`);
      assert.notEqual(r.outboundReason, '', `${r.cert.name}: the outbound refusal was not counted`);
    }
    const reasonOf = (name: string): [string, string] => {
      const r = rows.find((x) => x.cert.name === name)!;
      return [r.inboundReason, r.outboundReason];
    };
    assert.deepEqual(reasonOf('another trust domain'), ['foreign-trust-domain', 'foreign-trust-domain']);
    assert.deepEqual(reasonOf('CA:TRUE leaf'), ['invalid-svid', 'invalid-svid']);
    assert.deepEqual(reasonOf('path with /../'), ['invalid-svid', 'invalid-svid']);
    assert.deepEqual(reasonOf('signed by another root'), ['tls-handshake', 'tls-handshake']);
    const refusedLogs = logs.filter((l) => /not an X\.509-SVID of this mesh/.test(l.msg));
    const inboundLog = refusedLogs.find((l) => l['direction'] === 'inbound' && /evil\.example/.test(String(l['error'])));
    assert.ok(inboundLog, `no inbound log line names the foreign trust domain; saw ${JSON.stringify(refusedLogs.slice(0, 3))}`);
    assert.equal(inboundLog['rule'], 'trust-domain');
    assert.match(String(inboundLog['error']), /trust domain evil\.example.*only .*cluster\.local/);
    const outboundLog = refusedLogs.find((l) => l['direction'] === 'outbound' && l['rule'] === 'ca');
    assert.ok(outboundLog, 'no outbound log line names the CA:TRUE leaf');
    assert.match(String(outboundLog['error']), /CA:TRUE/);
  });
});
