// The tiers built from Go modules (test/cluster, test/h2spec, test/svid,
// test/otelcol) share test/go-tier.sh: their scripts pass shellcheck, which
// follows each build.sh into the shared file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TEST = join(dirname(fileURLToPath(import.meta.url)), '..');
const TIERS = ['cluster', 'h2spec', 'svid', 'otelcol'];

describe('the Go-module test tiers', () => {
  it('pass shellcheck, test/go-tier.sh with every build.sh and ensure.sh', function () {
    if (spawnSync('shellcheck', ['--version']).status !== 0) {
      console.log('      skipped: shellcheck is not installed (apt-get install shellcheck)');
      this.skip();
    }
    const scripts = ['go-tier.sh', ...TIERS.flatMap((t) => [`${t}/build.sh`, `${t}/ensure.sh`])];
    const r = spawnSync('shellcheck', ['-x', ...scripts], { cwd: TEST, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
