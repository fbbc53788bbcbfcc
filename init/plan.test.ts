import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parseInitOptions, type FlagValues } from './config.js';
import { CHAINS, planRedirectRules, planRules, ruleLine, type Family } from './plan.js';

// Golden files: testdata/NAME.json holds the flags (as the webhook passes them)
// plus an optional "family"; testdata/NAME.rules is the planned restore input.
// Refresh with: UPDATE_GOLDEN=1 npx mocha init/plan.test.ts
const TESTDATA = new URL('./testdata/', import.meta.url);
const update = process.env.UPDATE_GOLDEN === '1';

function load(name: string): { flags: FlagValues; family: Family } {
  const { family = 'ipv4', ...flags } = JSON.parse(readFileSync(new URL(`${name}.json`, TESTDATA), 'utf8')) as Record<string, string>;
  return { flags: flags as FlagValues, family: family as Family };
}

describe('planRedirectRules golden files', function () {
  const cases = readdirSync(TESTDATA)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length));

  it('has the representative configs', function () {
    for (const name of ['defaults', 'skip-ports', 'skip-cidrs', 'ipv6']) assert.ok(cases.includes(name), name);
  });

  for (const name of cases) {
    it(`${name}.json -> ${name}.rules`, function () {
      const { flags, family } = load(name);
      const got = planRedirectRules(parseInitOptions(flags).redirect, family);
      const file = new URL(`${name}.rules`, TESTDATA);
      if (update) writeFileSync(file, got);
      assert.equal(got, readFileSync(file, 'utf8'), `plan for ${name} changed; if intended, run with UPDATE_GOLDEN=1`);
    });
  }
});

describe('planRules', function () {
  const defaults = parseInitOptions({}).redirect;

  it('tags every rule with a tsmesh/ comment and matches only TCP', function () {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const plan = planRules(parseInitOptions({ 'skip-outbound-ports': '25', 'skip-outbound-cidrs': '10.0.0.0/8,fd00::/8' }).redirect, family);
      for (const r of [...plan.rules, ...plan.jumps]) {
        assert.match(r.spec, / -m comment --comment "tsmesh\/[a-z0-9-]+" -j /, ruleLine(r));
        assert.match(r.spec, /(^|\s)-p tcp /, ruleLine(r));
      }
    }
  });

  it('exempts the proxy before anything is captured', function () {
    const lines = planRules(defaults, 'ipv4').rules.filter((r) => r.chain === CHAINS.output).map((r) => r.purpose);
    const capture = lines.indexOf('capture-outbound');
    for (const exempt of ['proxy-uid', 'proxy-gid', 'app-uid-loopback', 'app-gid-loopback']) {
      assert.ok(lines.indexOf(exempt) >= 0 && lines.indexOf(exempt) < capture, `${exempt} before capture in ${lines.join(', ')}`);
    }
  });

  it('never captures the admin port inbound, even when listed', function () {
    const plan = planRules(parseInitOptions({ 'inbound-ports': '15020,8080' }).redirect, 'ipv4');
    const inbound = plan.rules.filter((r) => r.chain === CHAINS.inbound);
    assert.equal(inbound[0]?.purpose, 'skip-inbound-ports');
    assert.match(inbound[0]!.spec, /--dports 15020 /);
  });

  it('keeps each family to its own addresses', function () {
    const config = parseInitOptions({ 'skip-outbound-cidrs': '10.0.0.0/8,fd00::/8', 'outbound-cidrs': '10.96.0.0/12' }).redirect;
    const v4 = planRedirectRules(config, 'ipv4');
    const v6 = planRedirectRules(config, 'ipv6');
    assert.ok(v4.includes('-d 10.0.0.0/8') && !v4.includes('fd00::/8') && !v4.includes('::1/128'));
    assert.ok(v6.includes('-d fd00::/8') && !v6.includes('10.0.0.0/8') && v6.includes('! -d ::1/128'));
    // Only IPv4 ranges are listed for capture: IPv6 captures nothing outbound.
    assert.ok(!v6.includes('-j TSMESH_REDIRECT'));
  });

  it('captures no inbound port for an empty list', function () {
    const plan = planRules(parseInitOptions({ 'inbound-ports': '' }).redirect, 'ipv4');
    assert.ok(!plan.rules.some((r) => r.chain === CHAINS.inbound && r.spec.endsWith(`-j ${CHAINS.inRedirect}`)));
  });

  it('is a valid restore file: header comment, table, chains, rules, COMMIT', function () {
    const text = planRedirectRules(defaults, 'ipv4');
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0]!, /^# /);
    assert.equal(lines[1], '*nat');
    assert.deepEqual(lines.slice(2, 6), [':TSMESH_INBOUND - [0:0]', ':TSMESH_IN_REDIRECT - [0:0]', ':TSMESH_OUTPUT - [0:0]', ':TSMESH_REDIRECT - [0:0]']);
    assert.equal(lines.at(-1), 'COMMIT');
    assert.ok(text.endsWith('\n'));
  });
});
