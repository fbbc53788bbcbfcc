// npm run bench:ca: how fast the CA signs, and how long POST /v1/certificates
// takes at a fixed request rate. Prints figures side by side with a comparator
// (a straightforward @peculiar/x509 parse-verify-sign loop) and ends with one
// machine-readable line:
//   bench:ca certs_per_second=<n> issue_p99_ms=<n>
// Options (environment): BENCH_SECONDS (default 3), BENCH_RATE (requests/s, default 200),
// BENCH_REQUESTS (default 1000).
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as x509 from '@peculiar/x509';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../authority.js';
import { buildCsrPem } from '../csr.js';
import { CA_FILES } from '../material.js';
import { createRootCa } from '../root.js';
import { TrustBundle } from '../trust-bundle.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const RATE = Number(process.env.BENCH_RATE ?? 200);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1000);
const TD = 'cluster.local';
const ID = 'spiffe://cluster.local/ns/bench/sa/client';
const TOKEN = 'bench-token-0123456789abcdef';

function csrs(n: number): string[] {
  return Array.from({ length: n }, () => buildCsrPem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, ID));
}

function signingRate(ca: CertificateAuthority, pool: string[]): number {
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) ca.signWorkloadCsr(pool[n++ % pool.length]!, ID);
  return n / ((performance.now() - t0) / 1000);
}

/** The comparator: parse, verify and sign with @peculiar/x509 on WebCrypto. */
async function peculiarRate(rootPem: string, rootKeyPem: string, pool: string[]): Promise<number> {
  x509.cryptoProvider.set(webcrypto as never);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const issuer = new x509.X509Certificate(rootPem);
  const key = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(rootKeyPem), alg, false, ['sign']);
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    const csr = new x509.Pkcs10CertificateRequest(pool[n++ % pool.length]!);
    if (!(await csr.verify())) throw new Error('CSR did not verify');
    const now = Date.now();
    await x509.X509CertificateGenerator.create({
      serialNumber: '7fedcba9876543210123456789abcdef',
      issuer: issuer.subject,
      subject: '',
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3600_000),
      publicKey: csr.publicKey,
      signingKey: key as never,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true),
      ],
    });
  }
  return n / ((performance.now() - t0) / 1000);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Starts `tsmesh control-plane` in its own process and returns its CA port. */
async function startControlPlane(dir: string): Promise<{ port: number; stop: () => void }> {
  const main = resolve(import.meta.dirname, '..', '..', 'cli', 'main.ts');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', main, 'control-plane', '--ca-dir', dir, '--token-file', join(dir, 'tokens.yaml'), '--host', '127.0.0.1', '--port', '0', '--admin-port', '0', '--log-level', 'info'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const port = await new Promise<number>((ok, fail) => {
    let buf = '';
    child.stderr.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /"caPort":(\d+)/.exec(buf);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`control plane exited ${code}: ${buf}`)));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

async function issueLatency(dir: string, bundle: string, pool: string[]): Promise<number[]> {
  const { port, stop } = await startControlPlane(dir);
  const agent = new Agent({ connect: { ca: bundle, servername: 'tsmesh-control-plane.tsmesh-system.svc' }, connections: 32 });
  const url = `https://127.0.0.1:${port}/v1/certificates`;
  const post = async (csr: string): Promise<number> => {
    const t0 = performance.now();
    const res = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ csr }),
    });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`POST /v1/certificates answered ${res.statusCode}`);
    return performance.now() - t0;
  };
  try {
    for (let i = 0; i < 50; i++) await post(pool[i % pool.length]!); // warm-up: TLS sessions, JIT
    // Open loop: requests start on a fixed schedule whatever the answers' pace.
    const latencies: Promise<number>[] = [];
    const t0 = performance.now();
    for (let i = 0; i < REQUESTS; i++) {
      const due = t0 + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      latencies.push(post(pool[i % pool.length]!));
    }
    return (await Promise.all(latencies)).sort((a, b) => a - b);
  } finally {
    await agent.close();
    stop();
  }
}

async function main(): Promise<void> {
  const root = await createRootCa(TD);
  const ca = new CertificateAuthority({ trustDomain: TD, issuerCertPem: root.certPem, issuerKeyPem: root.keyPem, trustBundle: new TrustBundle(root.certPem) });
  const pool = csrs(200);

  const ours = signingRate(ca, pool);
  const theirs = await peculiarRate(root.certPem, root.keyPem, pool);
  console.log(`signing, one core, ${SECONDS}s each (parse + verify CSR + sign):`);
  console.log(`  tsmesh CA (DER templates + node:crypto)   ${ours.toFixed(0).padStart(7)} certs/s`);
  console.log(`  @peculiar/x509 on WebCrypto (comparator)  ${theirs.toFixed(0).padStart(7)} certs/s`);

  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-bench-ca-'));
  try {
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n  - token: ${TOKEN}\n    spiffeId: ${ID}\n`);
    const lat = await issueLatency(dir, root.certPem, pool);
    console.log(`POST /v1/certificates over TLS, ${REQUESTS} requests at ${RATE}/s (open loop, control plane in its own process):`);
    console.log(`  p50 ${percentile(lat, 50).toFixed(2)} ms   p90 ${percentile(lat, 90).toFixed(2)} ms   p99 ${percentile(lat, 99).toFixed(2)} ms   max ${lat[lat.length - 1]!.toFixed(2)} ms`);
    console.log(`bench:ca certs_per_second=${ours.toFixed(0)} issue_p99_ms=${percentile(lat, 99).toFixed(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
