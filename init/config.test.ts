import assert from 'node:assert/strict';
import { parseCidr, parseCidrList } from './cidr.js';
import { ADMIN_PORT, INIT_FLAGS, InitConfigError, parseInitOptions } from './config.js';
import { multiportChunks, parsePortList } from './ports.js';

describe('init config', function () {
  it('has the documented defaults', function () {
    const o = parseInitOptions({});
    assert.deepEqual(o.redirect, {
      proxyUid: 1337,
      proxyGid: 1337,
      inboundPort: 15006,
      outboundPort: 15001,
      inboundPorts: 'all',
      skipInboundPorts: [{ first: ADMIN_PORT, last: ADMIN_PORT }],
      outboundCidrs: 'all',
      skipOutboundPorts: [],
      skipOutboundCidrs: [],
    });
    assert.equal(o.ipv6, 'auto');
    assert.equal(o.backend, 'auto');
    assert.equal(o.dryRun, false);
    assert.equal(o.cleanup, false);
  });

  it('reads each flag from its TSMESH_* variable; a flag wins over the variable', function () {
    const env = { TSMESH_PROXY_UID: '2102', TSMESH_SKIP_OUTBOUND_PORTS: '25', TSMESH_IPV6: 'false', TSMESH_DRY_RUN: 'true', TSMESH_OUTBOUND_PORT: '' };
    const o = parseInitOptions({ 'skip-outbound-ports': '3306' }, env);
    assert.equal(o.redirect.proxyUid, 2102);
    assert.deepEqual(o.redirect.skipOutboundPorts, [{ first: 3306, last: 3306 }]);
    assert.equal(o.ipv6, false);
    assert.equal(o.dryRun, true);
    assert.equal(o.redirect.outboundPort, 15001, 'an empty variable counts as unset');
  });

  it('names every flag after a TSMESH_ variable', function () {
    for (const [flag, spec] of Object.entries(INIT_FLAGS)) assert.equal(spec.env, `TSMESH_${flag.toUpperCase().replaceAll('-', '_')}`);
  });

  it('always skips the admin port inbound', function () {
    const o = parseInitOptions({ 'skip-inbound-ports': '9090,15020' });
    assert.deepEqual(o.redirect.skipInboundPorts, [
      { first: 15020, last: 15020 },
      { first: 9090, last: 9090 },
    ]);
  });

  const refusals: [Record<string, string>, Record<string, string>, string][] = [
    [{ 'skip-outbound-ports': 'abc' }, {}, '--skip-outbound-ports: "abc" is not a port; expected comma-separated ports or ranges like 25,3306,8000-8100'],
    [{}, { TSMESH_SKIP_OUTBOUND_PORTS: '25,70000' }, 'TSMESH_SKIP_OUTBOUND_PORTS: "70000" is not a port; expected comma-separated'],
    [{ 'skip-inbound-ports': '9000-8000' }, {}, '--skip-inbound-ports: "9000-8000" is not a port range: 9000 is above 8000'],
    [{ 'skip-outbound-cidrs': '10.0.0.0/33' }, {}, '--skip-outbound-cidrs: "10.0.0.0/33" has a bad prefix length; use 0-32; expected comma-separated addresses'],
    [{ 'outbound-cidrs': 'example.com' }, {}, '--outbound-cidrs: "example.com" is not an address or CIDR'],
    [{ 'proxy-uid': '-1' }, {}, '--proxy-uid: "-1" is not a numeric id'],
    [{ 'inbound-port': '0' }, {}, '--inbound-port: "0" is not a port; expected a number from 1 to 65535'],
    [{ 'inbound-port': '15001' }, {}, '--inbound-port: 15001 is also the outbound port'],
    [{ 'outbound-port': '15020' }, {}, "--outbound-port: 15020 is the proxy's admin port"],
    [{ ipv6: 'maybe' }, {}, '--ipv6: "maybe" is not a boolean; expected true or false'],
    [{ 'iptables-backend': 'ebpf' }, {}, '--iptables-backend: "ebpf" is not a backend; expected auto, nft or legacy'],
    [{}, { TSMESH_CLEANUP: 'please' }, 'TSMESH_CLEANUP: "please" is not a boolean'],
  ];
  for (const [flags, env, message] of refusals) {
    it(`refuses ${JSON.stringify({ ...flags, ...env })}`, function () {
      assert.throws(
        () => parseInitOptions(flags, env),
        (e: unknown) => e instanceof InitConfigError && e.message.startsWith(message),
      );
    });
  }
});

describe('port lists', function () {
  it('parses ports and ranges, with "-" or ":", ignoring spaces', function () {
    assert.deepEqual(parsePortList(' 25, 3306,8000-8100 ,9000:9001'), [
      { first: 25, last: 25 },
      { first: 3306, last: 3306 },
      { first: 8000, last: 8100 },
      { first: 9000, last: 9001 },
    ]);
    assert.deepEqual(parsePortList(''), []);
  });

  it('refuses empty items, zero, and three-part ranges', function () {
    for (const bad of ['25,,26', '0', '1-2-3', '65536', '1.5']) assert.throws(() => parsePortList(bad), RangeError, bad);
  });

  it('fits multiport: at most 15 ports a rule, a range counting two', function () {
    const ports = parsePortList('1,2,3,4,5,6,7,8,9,10,11,12,13,14,100-200,15');
    assert.deepEqual(multiportChunks(ports), ['1,2,3,4,5,6,7,8,9,10,11,12,13,14', '100:200,15']);
    assert.deepEqual(multiportChunks([]), []);
  });
});

describe('CIDRs', function () {
  it('normalises to the form iptables-save prints', function () {
    assert.deepEqual(parseCidr('10.244.7.9/24'), { family: 'ipv4', address: '10.244.7.0', prefix: 24 });
    assert.deepEqual(parseCidr('169.254.169.254'), { family: 'ipv4', address: '169.254.169.254', prefix: 32 });
    assert.deepEqual(parseCidr('FD00:10:96:0:0:0:0:1/112'), { family: 'ipv6', address: 'fd00:10:96::', prefix: 112 });
    assert.deepEqual(parseCidr('2001:db8:0:0:1:0:0:1'), { family: 'ipv6', address: '2001:db8::1:0:0:1', prefix: 128 });
    assert.deepEqual(parseCidr('2001:db8:1:0:1::/128'), { family: 'ipv6', address: '2001:db8:1:0:1::', prefix: 128 });
    assert.deepEqual(parseCidr('::/0'), { family: 'ipv6', address: '::', prefix: 0 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 'ipv4', address: '0.0.0.0', prefix: 0 });
    assert.deepEqual(parseCidr('::ffff:10.0.0.1/128'), { family: 'ipv6', address: '::ffff:10.0.0.1', prefix: 128 });
    assert.deepEqual(parseCidr('::ffff:0:0/96'), { family: 'ipv6', address: '::ffff:0.0.0.0', prefix: 96 });
  });

  it('drops duplicates after normalising', function () {
    assert.equal(parseCidrList('10.0.0.1/8,10.0.0.0/8').length, 1);
  });

  it('refuses names, bad prefixes and zone ids', function () {
    for (const bad of ['localhost', '10.0.0.0/', '10.0.0.0/x', 'fe80::1%eth0', '::/129', '10.0.0.256']) {
      assert.throws(() => parseCidr(bad), RangeError, bad);
    }
  });
});
