import assert from 'node:assert/strict';
import { silentLogger } from '../lib/log.js';
import { parseInitOptions } from './config.js';
import { InitError, missingNetCapabilities } from './errors.js';
import { NOT_FOUND, RecordingExecutor, type ExecResult } from './executor.js';
import { hasPodIPv6, runInit, type Interfaces } from './run.js';
import { planRedirectRules } from './plan.js';

const v4Only: Interfaces = {
  lo: [
    { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' },
    { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
  ],
  eth0: [
    { address: '10.244.1.2', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.244.1.2/24' },
    { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
  ],
};
const dualStack: Interfaces = {
  ...v4Only,
  eth0: [
    ...(v4Only.eth0 ?? []),
    { address: 'fd00:10:244:1::2', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fd00:10:244:1::2/64', scopeid: 0 },
  ],
};

const emptyTables = (command: string): ExecResult =>
  command.includes('nft') ? { code: 0, stdout: '', stderr: '' } : { code: NOT_FOUND, stdout: '', stderr: 'not found' };

describe('runInit', function () {
  it('counts only global IPv6 addresses as the pod having IPv6', function () {
    assert.equal(hasPodIPv6(v4Only), false);
    assert.equal(hasPodIPv6(dualStack), true);
  });

  it('prints the exact restore input in a dry run and changes nothing', async function () {
    const exec = new RecordingExecutor(emptyTables);
    const printed: string[] = [];
    const options = parseInitOptions({ 'dry-run': true, 'skip-outbound-ports': '5432' });
    const report = await runInit(options, { exec, log: silentLogger, print: (t) => printed.push(t), interfaces: () => dualStack });
    assert.deepEqual(report.outcomes.map((o) => o.family), ['ipv4', 'ipv6']);
    assert.ok(exec.calls.every((c) => c.command.endsWith('-save')), 'only reads');
    assert.equal(printed[0], `# would run: iptables-nft-restore --noflush --wait=10\n${planRedirectRules(options.redirect, 'ipv4')}`);
    assert.equal(printed[1], `# would run: ip6tables-nft-restore --noflush --wait=10\n${planRedirectRules(options.redirect, 'ipv6')}`);
  });

  it('redirects IPv4 only when the pod has no IPv6 address (auto)', async function () {
    const exec = new RecordingExecutor(emptyTables);
    const report = await runInit(parseInitOptions({ 'dry-run': true }), { exec, log: silentLogger, print: () => {}, interfaces: () => v4Only });
    assert.deepEqual(report.outcomes.map((o) => o.family), ['ipv4']);
    assert.ok(!exec.calls.some((c) => c.command.startsWith('ip6tables')));
  });

  it('still shows the plan in a dry run without privileges', async function () {
    const denied = { code: 4, stdout: '', stderr: 'Permission denied (you must be root)' };
    const printed: string[] = [];
    const options = parseInitOptions({ 'dry-run': true, ipv6: 'false' });
    await runInit(options, { exec: new RecordingExecutor(() => denied), log: silentLogger, print: (t) => printed.push(t) });
    assert.match(printed[0] ?? '', /cannot read the current rules/);
    assert.ok(printed[1]?.endsWith(planRedirectRules(options.redirect, 'ipv4')));
  });

  it('fails without privileges when not a dry run', async function () {
    const denied = { code: 4, stdout: '', stderr: 'Permission denied (you must be root)' };
    await assert.rejects(
      runInit(parseInitOptions({ ipv6: 'false' }), { exec: new RecordingExecutor(() => denied), log: silentLogger, print: () => {}, procStatus: () => undefined }),
      /NET_ADMIN and NET_RAW/,
    );
  });

  it('checks NET_ADMIN and NET_RAW before running anything', async function () {
    const exec = new RecordingExecutor(emptyTables);
    // CapEff of a root process whose bounding set dropped NET_ADMIN (bit 12) and NET_RAW (bit 13).
    const status = 'Name:\tnode\nCapPrm:\t000001fffeffcfff\nCapEff:\t000001fffeffcfff\n';
    await assert.rejects(runInit(parseInitOptions({}), { exec, log: silentLogger, print: () => {}, procStatus: () => status }), (e: unknown) => {
      assert.ok(e instanceof InitError && e.code === 'missing-capability');
      assert.match(e.message, /^this process lacks NET_ADMIN and NET_RAW: the tsmesh-init container needs the NET_ADMIN and NET_RAW capabilities/);
      return true;
    });
    assert.deepEqual(exec.calls, []);
    assert.deepEqual(missingNetCapabilities('CapEff:\t000001ffffffffff'), []);
    assert.deepEqual(missingNetCapabilities('CapEff:\t0000000000001000'), ['NET_RAW']);
    assert.equal(missingNetCapabilities('no such line'), undefined);
  });

  it('cleanup looks at both families of every installed backend and removes nothing where tsmesh never ran', async function () {
    const exec = new RecordingExecutor(emptyTables);
    const report = await runInit(parseInitOptions({ cleanup: true }), { exec, log: silentLogger, print: () => {}, interfaces: () => v4Only, procStatus: () => undefined });
    assert.deepEqual(report.outcomes, []);
    assert.ok(!exec.calls.some((c) => c.command.endsWith('-restore')));
    assert.deepEqual([...new Set(exec.calls.map((c) => c.command))], ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save']);
  });
});
