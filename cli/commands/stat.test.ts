// `tsmesh stat` as an operator runs it, against the demo mesh's control plane.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { fetchMeshView } from '../../control/observe/stat.js';
import { startDemo, type RunningDemo } from '../../demo/run.js';
import { NAMESPACE, WORKLOADS } from '../../demo/topology.js';
import { silentLogger } from '../../lib/log.js';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');

/** Runs the CLI as a child process, without blocking this process (the demo runs in it). */
function tsmesh(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, out, err) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

/** The rows of a printed table, split on runs of spaces. */
const rows = (table: string): string[][] => table.trimEnd().split('\n').map((l) => l.trim().split(/\s{2,}/));

describe('tsmesh stat', function () {
  this.timeout(120_000);
  let demo: RunningDemo | undefined;
  let address: string;
  before(async () => {
    // Loopback: ports of its own, so it runs beside any other demo on the machine.
    demo = await startDemo({ log: silentLogger, rps: 40, mode: 'loopback' });
    address = demo.controlPlane.adminAddress;
    // Rates on every workload that answers calls: a few scrapes with traffic in between.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const view = await fetchMeshView(address);
      if (view.workloads.filter((w) => w.rps > 0).length === WORKLOADS.length - 1) break;
      assert.ok(Date.now() < deadline, `no rates after 60 s: ${JSON.stringify(view.workloads)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });
  after(async () => demo?.stop());

  it('prints golden metrics per workload of a namespace, with ratings failing and retries hiding it upstream', async () => {
    const r = await tsmesh('stat', '--namespace', NAMESPACE, '--admin-address', address);
    assert.equal(r.code, 0, r.err);
    const [head, ...body] = rows(r.out);
    assert.deepEqual(head, ['NAME', 'MESHED', 'SUCCESS', 'RPS', 'LATENCY_P50', 'LATENCY_P95', 'LATENCY_P99']);
    assert.deepEqual(body.map((c) => c[0]), WORKLOADS.map((w) => w.name).sort());
    const row = (name: string): string[] => body.find((c) => c[0] === name)!;
    for (const c of body) assert.equal(c[1], '1/1', `${c[0]} meshed`);
    // loadgen only calls: it answers nothing.
    assert.deepEqual(row('loadgen').slice(2), ['-', '0.0rps', '-', '-', '-']);
    for (const name of ['web', 'api', 'ratings']) {
      const [, , success, rps, p50, p95, p99] = row(name);
      assert.match(success!, /^\d+\.\d\d%$/);
      assert.ok(parseFloat(rps!) > 0, `${name} rps ${rps}`);
      for (const latency of [p50, p95, p99]) assert.match(latency!, /^\d+(\.\d)?ms$/, `${name} latency`);
      assert.ok(parseFloat(p50!) <= parseFloat(p99!), `${name} p50 ${p50} > p99 ${p99}`);
    }
    // ratings answers a share of 500s itself; api's retries keep web's view clean.
    assert.ok(parseFloat(row('ratings')[2]!) < 95, `ratings success ${row('ratings')[2]}`);
    assert.ok(parseFloat(row('web')[2]!) > 97, `web success ${row('web')[2]}`);
  });

  it('adds a NAMESPACE column without --namespace', async () => {
    const r = await tsmesh('stat', '--admin-address', address);
    assert.equal(r.code, 0, r.err);
    const [head, ...body] = rows(r.out);
    assert.equal(head![0], 'NAMESPACE');
    assert.ok(body.length === WORKLOADS.length && body.every((c) => c[0] === NAMESPACE), r.out);
  });

  it('writes the workloads of -n NAMESPACE as JSON or YAML with -o, the numbers unformatted', async () => {
    const json = await tsmesh('stat', '-n', NAMESPACE, '-o', 'json', '--admin-address', address);
    assert.equal(json.code, 0, json.err);
    const workloads = JSON.parse(json.out) as { name: string; namespace: string; pods: number; meshedPods: number; rps: number; successRate: number | null; p99Ms: number | null }[];
    assert.deepEqual(workloads.map((w) => w.name).sort(), WORKLOADS.map((w) => w.name).sort());
    for (const w of workloads) {
      assert.equal(w.namespace, NAMESPACE);
      assert.equal(w.meshedPods, w.pods, `${w.name} meshed`);
      assert.equal(typeof w.rps, 'number');
    }
    assert.ok(workloads.find((w) => w.name === 'web')!.rps > 0);
    const yaml = await tsmesh('stat', '--namespace', NAMESPACE, '--output=yaml', '--admin-address', address);
    assert.equal(yaml.code, 0, yaml.err);
    const fromYaml = parseYaml(yaml.out) as typeof workloads;
    assert.deepEqual(fromYaml.map((w) => [w.name, w.namespace, w.pods]), workloads.map((w) => [w.name, w.namespace, w.pods]));
  });

  it('refuses an output format other than table, json and yaml, with the usage (exit 2)', async () => {
    const r = await tsmesh('stat', '-o', 'wide', '--admin-address', address);
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    assert.match(r.err, /^tsmesh stat: -o\/--output "wide" is not one of table, json, yaml\n/);
    assert.match(r.err, /Usage: tsmesh stat/);
  });

  it('fails, naming the namespaces it knows, for a namespace without meshed workloads', async () => {
    const r = await tsmesh('stat', '--namespace', 'nope', '--admin-address', address);
    assert.equal(r.code, 1);
    assert.match(r.err, /no meshed workload in namespace "nope"; namespaces with one: demo/);
  });

  it('fails with the address it tried and how to reach the control plane when nothing listens there', async () => {
    // A port that was free a moment ago: nothing listens on it.
    const s = createServer().listen(0, '127.0.0.1');
    await once(s, 'listening');
    const { port } = s.address() as AddressInfo;
    await new Promise((r) => s.close(r));
    const r = await tsmesh('stat', '--admin-address', `127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^tsmesh stat: cannot reach the control plane at http://127\\.0\\.0\\.1:${port}/api/v1/mesh \\(.*ECONNREFUSED.*\\)`));
    assert.match(r.err, /--admin-address HOST:PORT/);
    assert.match(r.err, /kubectl -n tsmesh-system port-forward deploy\/tsmesh-control-plane 15014/);
  });

  it('refuses an address that is not HOST:PORT, with the usage', async () => {
    const r = await tsmesh('stat', '--admin-address', 'http://127.0.0.1');
    assert.equal(r.code, 2);
    assert.match(r.err, /--admin-address "http:\/\/127\.0\.0\.1" must be HOST:PORT/);
    assert.match(r.err, /Usage: tsmesh stat/);
  });
});
