// `tsmesh demo` end to end in loopback mode: every edge carries mTLS
// identities, the canary takes its share, and retries hide the flaky service
// from its callers (demo/netns.test.ts checks the same in network namespaces).
import { silentLogger } from '../lib/log.js';
import { startDemo, type RunningDemo } from './run.js';
import { driveTraffic, itKeepsTheDemoPromises } from './testdata/demo-checks.js';

describe('tsmesh demo (loopback mode)', function () {
  this.timeout(120_000);
  let demo: RunningDemo | undefined;
  before(async () => {
    demo = await startDemo({ log: silentLogger, rps: 100, mode: 'loopback' });
    await driveTraffic(demo);
  });
  after(async () => demo?.stop());

  itKeepsTheDemoPromises(() => demo!);
});
