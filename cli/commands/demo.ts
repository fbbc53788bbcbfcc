// tsmesh demo: a whole mesh on this machine (what `npm start` runs).
import { chooseDemoMode } from '../../demo/netns.js';
import { startDemo } from '../../demo/run.js';
import { formatDemoTable } from '../../demo/stats.js';
import { RATINGS_FAILURE_SHARE } from '../../demo/topology.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { parseFlags, UsageError, type Command } from '../command.js';

const USAGE = `Usage: tsmesh demo [--rps N] [--mode auto|netns|loopback] [--prometheus] [--log-level LEVEL]

Runs a small mesh on this machine, no cluster needed: a control plane in
local mode, and loadgen -> web -> api (v1, with a 10% canary v2) -> ratings
(a flaky service behind retries and a circuit breaker), each with its own
sidecar, mTLS and SPIFFE identity. Prints golden metrics per edge every few
seconds. Ctrl-C stops everything it started.

As root, each workload runs as a pod would: in a network namespace of its
own on a bridge (10.244.N.0/24), \`tsmesh init\` redirects, \`tsmesh proxy\` as
uid 1337, the app calling Services by ClusterIP. Otherwise on loopback, each
app calling its sidecar on an explicit port.

  --rps N            requests per second of the traffic generator (default 20)
  --mode MODE        auto (default: netns when root), netns, loopback
  --prometheus       also run Prometheus (Debian's package) scraping every proxy
  --log-level LEVEL  error, warn, info, debug (default warn)`;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a whole mesh on this machine',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { rps: { type: 'string' }, mode: { type: 'string' }, prometheus: { type: 'boolean' }, 'log-level': { type: 'string' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const rps = values.rps === undefined ? 20 : Number(values.rps);
    if (!Number.isFinite(rps) || rps <= 0 || rps > 1000) throw new Error(`--rps ${JSON.stringify(values.rps)} must be a number from 1 to 1000`);
    const requested = values.mode ?? 'auto';
    if (requested !== 'auto' && requested !== 'netns' && requested !== 'loopback') throw new UsageError(`--mode ${JSON.stringify(requested)} must be auto, netns or loopback`);
    const log = createLogger('demo', parseLogLevel(values['log-level'] ?? 'warn'));
    const { mode, reason } = await chooseDemoMode(requested);
    console.log('tsmesh demo: starting a control plane and five workloads, each with its own sidecar...');
    if (mode === 'netns') console.log('(network namespace mode: each workload is a pod with tsmesh init redirects and tsmesh proxy as uid 1337)');
    else console.log(`(loopback mode: apps reach their sidecars on explicit ports, because ${reason})`);
    // A signal while starting is kept: the demo stops as soon as it has started (a failed start removes what it made).
    let started = false;
    const stopping = new Promise<string>((resolve) => {
      const on = (signal: string) => () => {
        if (!started) console.log(`${signal}: stopping as soon as the demo has started...`);
        resolve(signal);
      };
      process.once('SIGINT', on('SIGINT'));
      process.once('SIGTERM', on('SIGTERM'));
    });
    const demo = await startDemo({ log, rps, mode, prometheus: values.prometheus === true });
    started = true;
    console.log(`ready: every sidecar holds a certificate from the mesh CA and its config from the discovery stream.`);
    const admin = `${demo.controlPlaneHost}:${demo.controlPlane.adminPort}`;
    console.log(`dashboard: http://${admin}/  (or in a terminal: tsmesh stat --admin-address ${admin})`);
    console.log(`control plane metrics: http://${admin}/metrics`);
    for (const [name, url] of demo.adminUrls) console.log(`  ${name.padEnd(8)} sidecar admin: ${url}/metrics  /config  /ready`);
    console.log(
      `ratings fails ${Math.round(RATINGS_FAILURE_SHARE * 100)}% of its requests on purpose (its "as answered" row): api retries them inside a retry budget, so most never reach the traffic generator, and the few that run out of attempts are counted as failed.`,
    );
    if (demo.prometheus) console.log(`prometheus: ${demo.prometheus.url}  (try: sum by (source_identity, destination_service) (rate(tsmesh_requests_total[30s])))`);
    // The control plane scrapes every sidecar every 2 s; the table is its view, as the dashboard's.
    const timer = setInterval(() => {
      const view = demo.controlPlane.meshView();
      if (!view) return;
      const { ok, failed } = demo.load.counts;
      console.log(`\n${new Date().toISOString()}  traffic generator: ${ok} ok, ${failed} failed so far  (rates over the last ${Math.round(view.windowSeconds)} s)`);
      console.log(formatDemoTable(view));
    }, 5000);
    const signal = await stopping;
    clearInterval(timer);
    console.log(`\n${signal}: stopping the demo...`);
    await demo.stop();
    return 0;
  },
};
