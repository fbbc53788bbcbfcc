// npm run bench:webhook: admission latency over HTTPS at a fixed rate (open
// loop: reviews go out on schedule whatever the answers' pace), the webhook in
// its own process, side by side with a floor server that answers without
// injecting (alternating one-second slices, so both see the same machine). The reviews are the golden pods of webhook/testdata. Ends with:
//   bench:webhook p50_ms=<n> p99_ms=<n>
// Options (environment): BENCH_RATE (reviews/s, default 200), BENCH_REQUESTS (default 2000).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { podCreateReview } from '../admission.js';
import { asPod, fixtureNames, injectFixture, loadFixture } from '../testdata/fixtures.js';
import { webhookServingCertificate } from '../testdata/tls.js';

const RATE = Number(process.env['BENCH_RATE'] ?? 200);
const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 2000);
const WARM_UP = 200;

function reviews(): string[] {
  const names = fixtureNames().filter((n) => injectFixture(loadFixture(n)).injected);
  return names.map((name, i) => {
    const pod = asPod(loadFixture(name), `${name}-bench`);
    return JSON.stringify(podCreateReview(pod, { uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, namespace: 'bench' }));
  });
}

async function startServer(mode: 'webhook' | 'floor', dir: string): Promise<{ port: number; stop: () => void }> {
  const script = resolve(import.meta.dirname, 'serve.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, mode, join(dir, 'key.pem'), join(dir, 'cert.pem')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((ok, fail) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /port=(\d+)/.exec(buf);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`${mode} server exited ${code}: ${buf}`)));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Target {
  readonly mode: 'webhook' | 'floor';
  readonly post: (body: string) => Promise<number>;
  readonly close: () => Promise<void>;
}

async function target(mode: 'webhook' | 'floor', dir: string, ca: string): Promise<Target> {
  const { port, stop } = await startServer(mode, dir);
  const agent = new Agent({ connect: { ca }, keepAliveTimeout: 30_000 });
  const url = `https://127.0.0.1:${port}/inject`;
  const post = async (body: string): Promise<number> => {
    const t0 = performance.now();
    const res = await request(url, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body });
    const text = await res.body.text();
    if (res.statusCode !== 200 || !text.includes('"allowed":true')) throw new Error(`${mode}: answered ${res.statusCode}: ${text.slice(0, 200)}`);
    return performance.now() - t0;
  };
  return {
    mode,
    post,
    close: async () => {
      await agent.close();
      stop();
    },
  };
}

/**
 * Open loop, one-second slices that alternate between the targets, so that
 * both see the same machine (other processes on it included).
 */
async function measure(targets: readonly Target[], bodies: string[]): Promise<number[][]> {
  for (const t of targets) for (let i = 0; i < WARM_UP; i++) await t.post(bodies[i % bodies.length]!); // TLS session, JIT
  const latencies: Promise<number>[][] = targets.map(() => []);
  const slices = Math.ceil(REQUESTS / RATE) * targets.length;
  const t0 = performance.now();
  let sent = 0;
  for (let slice = 0; slice < slices; slice++) {
    const which = slice % targets.length;
    for (let i = 0; i < RATE && latencies[which]!.length < REQUESTS; i++) {
      const wait = t0 + (sent * 1000) / RATE - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      latencies[which]!.push(targets[which]!.post(bodies[sent++ % bodies.length]!));
    }
  }
  return Promise.all(latencies.map(async (l) => (await Promise.all(l)).sort((a, b) => a - b)));
}

function line(label: string, lat: number[]): string {
  const f = (n: number) => n.toFixed(2).padStart(6);
  return `  ${label.padEnd(44)} p50 ${f(percentile(lat, 50))} ms   p90 ${f(percentile(lat, 90))} ms   p99 ${f(percentile(lat, 99))} ms   max ${f(lat[lat.length - 1]!)} ms`;
}

async function main(): Promise<void> {
  const tls = await webhookServingCertificate();
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-bench-webhook-'));
  try {
    writeFileSync(join(dir, 'key.pem'), tls.key, { mode: 0o600 });
    writeFileSync(join(dir, 'cert.pem'), tls.cert);
    const bodies = reviews();
    const sizes = bodies.map((b) => b.length);
    console.log(`POST /inject over HTTPS, ${REQUESTS} reviews each at ${RATE}/s (open loop, each server in its own process,`);
    console.log('  alternating one-second slices between them),');
    console.log(`  ${bodies.length} golden pods, ${Math.min(...sizes)}-${Math.max(...sizes)} bytes each:`);
    const targets = [await target('floor', dir, tls.ca), await target('webhook', dir, tls.ca)];
    let results: number[][];
    try {
      results = await measure(targets, bodies);
    } finally {
      for (const t of targets) await t.close();
    }
    const [floor, webhook] = results as [number[], number[]];
    console.log(line('floor: HTTPS + JSON, fixed answer (comparator)', floor));
    console.log(line('tsmesh webhook: parse, buildPodPatch, answer', webhook));
    console.log(`bench:webhook p50_ms=${percentile(webhook, 50).toFixed(2)} p99_ms=${percentile(webhook, 99).toFixed(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
