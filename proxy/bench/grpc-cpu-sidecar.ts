// One sidecar of `tsx proxy/bench/grpc-cpu.ts`, in a process of its own so
// that its CPU time is its own: startSidecar on loopback with the credentials
// and config the driver wrote.
//   node --import tsx proxy/bench/grpc-cpu-sidecar.ts SETUP.json
// SETUP.json: { credentials, config, originalDestination: {address, port} and
// which listener takes it ("outbound" or "inbound") }. Prints one line,
// "ready {outboundPort, inboundPort}", and runs until SIGTERM, when it drains.
// TSMESH_H2_FRAMES=true: HTTP/2 to meshed endpoints over tsmesh/h2f.
// GRPC_CPU_ALLOCATIONS=FILE: see sampleAllocations.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import type { WorkloadCredentials } from '../identity/types.js';
import { startSidecar } from '../sidecar.js';
import { FixedConfig, FixedIdentity } from '../testdata/mesh.js';
import { silentLogger } from '../../lib/log.js';
import { PROXY_ENV } from '../../contract/env.js';

export interface SidecarSetup {
  credentials: WorkloadCredentials;
  config: object;
  listener: 'outbound' | 'inbound';
  originalDestination: { address: string; port: number };
}

const setup = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as SidecarSetup;
const destination = { ...setup.originalDestination, family: 'IPv4' as const };
const sidecar = await startSidecar({
  identity: new FixedIdentity(setup.credentials),
  config: new FixedConfig(setup.config),
  log: silentLogger,
  host: '127.0.0.1',
  outboundPort: 0,
  inboundPort: 0,
  [setup.listener === 'outbound' ? 'outboundOriginalDestination' : 'inboundOriginalDestination']: () => destination,
  h2Frames: process.env[PROXY_ENV.H2_FRAMES] === 'true',
});
console.log(`ready ${JSON.stringify({ outboundPort: sidecar.outboundPort, inboundPort: sidecar.inboundPort })}`);
if (process.env['GRPC_CPU_ALLOCATIONS']) sampleAllocations(process.env['GRPC_CPU_ALLOCATIONS']);
process.on('SIGTERM', () => void sidecar.drain(0).finally(() => process.exit(0)));

/**
 * What the process allocates, garbage included (V8's sampling heap profiler
 * with the objects minor and major GCs collected): SIGUSR2 starts sampling,
 * the next SIGUSR2 writes `file`.PID (a .heapprofile for Chrome's DevTools or
 * allocation-top.ts) and stops.
 */
function sampleAllocations(file: string): void {
  const session = new Session();
  session.connect();
  let sampling = false;
  process.on('SIGUSR2', () => {
    if (!sampling) {
      sampling = true;
      session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
      return;
    }
    sampling = false;
    session.post('HeapProfiler.stopSampling', (err, r) => {
      if (!err) writeFileSync(`${file}.${process.pid}`, JSON.stringify(r.profile));
    });
  });
}
