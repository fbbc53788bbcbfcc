// `tsmesh init` flags and messages as the webhook and operators use them. The
// real installs run in network namespaces: test/netns/init.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { parseInitOptions } from '../../init/config.js';
import { planRedirectRules } from '../../init/plan.js';

const MAIN = resolve(import.meta.dirname, '..', 'main.ts');

function tsmesh(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'init', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('tsmesh init (CLI)', function () {
  this.timeout(30_000);

  it('lists every flag with its variable', function () {
    const r = tsmesh(['--help']);
    assert.equal(r.code, 0);
    for (const flag of ['--proxy-uid', '--skip-outbound-cidrs', '--dry-run', '--cleanup']) assert.ok(r.out.includes(flag), flag);
    assert.match(r.out, /\[TSMESH_SKIP_INBOUND_PORTS\]/);
  });

  it('names the flag, or the variable, and the bad value; exit code 2', function () {
    const flag = tsmesh(['--skip-outbound-ports', 'abc', '--dry-run']);
    assert.equal(flag.code, 2);
    assert.match(flag.err, /^tsmesh init: --skip-outbound-ports: "abc" is not a port; expected comma-separated ports or ranges like 25,3306,8000-8100\n/);
    const env = tsmesh(['--dry-run'], { TSMESH_SKIP_OUTBOUND_CIDRS: '10.0.0.0/40' });
    assert.equal(env.code, 2);
    assert.match(env.err, /^tsmesh init: TSMESH_SKIP_OUTBOUND_CIDRS: "10.0.0.0\/40" has a bad prefix length/);
    assert.equal(tsmesh(['--no-such-flag']).code, 2);
  });

  it('--dry-run prints the restore input and exits 0', function () {
    const r = tsmesh(['--dry-run', '--ipv6', 'false'], { TSMESH_SKIP_OUTBOUND_PORTS: '5432' });
    assert.equal(r.code, 0, r.err);
    const plan = planRedirectRules(parseInitOptions({ 'skip-outbound-ports': '5432' }).redirect, 'ipv4');
    // Where tsmesh rules are already installed the input omits the jumps; here they are not.
    assert.ok(r.out.includes(plan), r.out);
    assert.match(r.out, /# would run: iptables-(nft|legacy)-restore --noflush --wait=10\n/);
  });
});
