// tsmesh demo: a whole mesh on this machine (what `npm start` runs).
import { startDemo, formatEdges } from '../../demo/run.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { parseFlags, type Command } from '../command.js';

const USAGE = `Usage: tsmesh demo [--rps N] [--log-level LEVEL]

Runs a small mesh on this machine, no cluster needed: a control plane in
local mode, and loadgen -> web -> api (v1, with a 10% canary v2) -> ratings
(a flaky service behind retries and a circuit breaker), each with its own
sidecar, mTLS and SPIFFE identity. Prints golden metrics per edge every few
seconds. Ctrl-C stops everything it started.

  --rps N            requests per second of the traffic generator (default 20)
  --log-level LEVEL  error, warn, info, debug (default warn)`;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a whole mesh on this machine',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { rps: { type: 'string' }, 'log-level': { type: 'string' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const rps = values.rps === undefined ? 20 : Number(values.rps);
    if (!Number.isFinite(rps) || rps <= 0 || rps > 1000) throw new Error(`--rps ${JSON.stringify(values.rps)} must be a number from 1 to 1000`);
    const log = createLogger('demo', parseLogLevel(values['log-level'] ?? 'warn'));
    console.log('tsmesh demo: starting a control plane and five workloads, each with its own sidecar...');
    console.log('(loopback mode: apps reach their sidecars on explicit ports; network namespaces with iptables are not built into the demo yet)');
    const demo = await startDemo({ log, rps });
    console.log(`ready: every sidecar holds a certificate from the mesh CA and its config from the discovery stream.`);
    console.log(`control plane metrics: http://127.0.0.1:${demo.controlPlane.adminPort}/metrics`);
    for (const [name, port] of demo.adminPorts) console.log(`  ${name.padEnd(8)} sidecar admin: http://127.0.0.1:${port}/metrics  /config  /ready`);
    await demo.edges.edges(); // first sample
    const timer = setInterval(() => {
      void demo.edges.edges().then((edges) => {
        const { ok, failed } = demo.load.counts;
        console.log(`\n${new Date().toISOString()}  traffic generator: ${ok} ok, ${failed} failed so far`);
        // Calls between workloads first, then what each app itself answered (before its callers' retries).
        const order = (e: { source: string; destination: string }): string => `${e.source === '*' ? 1 : 0}${e.source}${e.destination}`;
        console.log(formatEdges(edges.sort((a, b) => order(a).localeCompare(order(b)))));
      });
    }, 5000);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    clearInterval(timer);
    console.log(`\n${signal}: stopping the demo...`);
    await demo.stop();
    return 0;
  },
};
