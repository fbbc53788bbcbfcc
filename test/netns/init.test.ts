// `tsmesh init` against the real kernel: a pod namespace and a peer namespace
// (test/netns/netns.ts), real iptables, real connections, and the original
// destination read back with SO_ORIGINAL_DST by test/netns/listener.ts.
// Skipped, with the reason printed, where namespaces cannot be created.
import assert from 'node:assert/strict';
import { parseInitOptions } from '../../init/config.js';
import { planRules, ruleLine } from '../../init/plan.js';
import { IPV4, IPV6, netnsUnavailable, normalizeSave, TestPods, type Answer, type FamilyAddresses } from './netns.js';

const PROXY = { uid: 1337, gid: 1337 };
const APP = { uid: 1000, gid: 1000 };
const POD_PORTS = [15001, 15006, 15020, 8080, 9090];
const PEER_PORTS = [80, 5432];

function landed(answer: Answer, name: string, listener: number): void {
  assert.equal(answer.error, undefined, `connection failed: ${answer.error}`);
  assert.deepEqual({ name: answer.name, listener: answer.listener }, { name, listener }, JSON.stringify(answer));
}

function redirected(answer: Answer, listener: number, original: { address: string; port: number; family: string }): void {
  landed(answer, 'pod', listener);
  assert.deepEqual(answer.original, original, JSON.stringify(answer));
}

/** iptables-save of both families, normalised (no timestamps, no counters). */
async function saves(pods: TestPods, backend: 'nft' | 'legacy'): Promise<string> {
  let out = '';
  for (const tool of [`iptables-${backend}-save`, `ip6tables-${backend}-save`]) {
    const r = await pods.exec(pods.pod, [tool]);
    assert.equal(r.code, 0, r.stderr);
    out += `## ${tool}\n${normalizeSave(r.stdout)}`;
  }
  return out;
}

describe('tsmesh init in network namespaces (real kernel)', function () {
  this.timeout(120_000);

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
  });

  describe('a dual-stack pod on the nft backend', function () {
    let pods: TestPods | undefined;
    let original = '';
    let installed = '';
    const args = ['--skip-outbound-ports', '5432', '--skip-outbound-cidrs', `${IPV4.otherCidr},${IPV6.otherCidr}`, '--skip-inbound-ports', '9090'];

    before(async function () {
      pods = await TestPods.create();
      // Rules that were there before tsmesh (a CNI's, say): they must survive, untouched.
      for (const cmd of [
        ['iptables-nft', '-t', 'nat', '-N', 'CNI-HOSTPORT'],
        ['iptables-nft', '-t', 'nat', '-A', 'OUTPUT', '-p', 'udp', '--dport', '53', '-j', 'CNI-HOSTPORT'],
        ['iptables-nft', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.244.1.0/24', '-m', 'comment', '--comment', 'pre-existing', '-j', 'RETURN'],
        ['iptables-nft', '-A', 'INPUT', '-p', 'icmp', '-j', 'ACCEPT'],
        ['ip6tables-nft', '-t', 'nat', '-A', 'POSTROUTING', '-s', 'fd00:10:244:1::/64', '-j', 'RETURN'],
      ]) {
        const r = await pods.exec(pods.pod, cmd);
        assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
      }
      original = await saves(pods, 'nft');
      await pods.listen(pods.pod, 'pod', POD_PORTS);
      await pods.listen(pods.peer, 'peer', PEER_PORTS);
      const r = await pods.tsmeshInit(args);
      assert.equal(r.code, 0, `tsmesh init failed:\n${r.stdout}\n${r.stderr}`);
      installed = await saves(pods, 'nft');
    });

    after(async function () {
      await pods?.destroy();
    });

    it('installs the plan line for line beside the rules already there', function () {
      const redirect = parseInitOptions({ 'skip-outbound-ports': '5432', 'skip-outbound-cidrs': `${IPV4.otherCidr},${IPV6.otherCidr}`, 'skip-inbound-ports': '9090' }).redirect;
      const [v4Saved = '', v6Saved = ''] = installed.split('## ip6tables-nft-save\n');
      for (const [family, text] of [['ipv4', v4Saved], ['ipv6', v6Saved]] as const) {
        const plan = planRules(redirect, family);
        const lines = text.split('\n');
        for (const r of [...plan.rules, ...plan.jumps]) assert.ok(lines.includes(ruleLine(r)), `${family}: missing ${ruleLine(r)}\n${text}`);
      }
      for (const kept of ['-A OUTPUT -p udp -m udp --dport 53 -j CNI-HOSTPORT', '-A POSTROUTING -s 10.244.1.0/24 -m comment --comment pre-existing -j RETURN', '-A INPUT -p icmp -j ACCEPT']) {
        assert.ok(v4Saved.includes(kept), `lost: ${kept}`);
      }
    });

    for (const fam of [IPV4, IPV6] satisfies FamilyAddresses[]) {
      describe(fam.family, function () {
        it('sends an app connection to another namespace to the outbound port; the original destination reads back', async function () {
          redirected(await pods!.connect(pods!.pod, fam.peer, 80, APP), 15001, { address: fam.peer, port: 80, family: fam.family });
        });

        it('never redirects the proxy (uid 1337), nor a process of gid 1337', async function () {
          landed(await pods!.connect(pods!.pod, fam.peer, 80, PROXY), 'peer', 80);
          landed(await pods!.connect(pods!.pod, fam.peer, 80, { uid: 1000, gid: 1337 }), 'peer', 80);
        });

        it('leaves skipped outbound ports and CIDRs alone', async function () {
          landed(await pods!.connect(pods!.pod, fam.peer, 5432, APP), 'peer', 5432);
          const other = await pods!.connect(pods!.pod, fam.peerOther, 80, APP);
          landed(other, 'peer', 80);
          assert.equal(other.local?.address.replace(/^::ffff:/, ''), fam.peerOther);
        });

        it('sends an inbound connection to pod:8080 to the inbound port, original port 8080', async function () {
          redirected(await pods!.connect(pods!.peer, fam.pod, 8080), 15006, { address: fam.pod, port: 8080, family: fam.family });
        });

        it('never redirects the admin port 15020, nor skipped inbound ports', async function () {
          landed(await pods!.connect(pods!.peer, fam.pod, 15020), 'pod', 15020);
          landed(await pods!.connect(pods!.peer, fam.pod, 9090), 'pod', 9090);
        });

        it("keeps the app's calls to itself local: loopback and its own pod IP", async function () {
          landed(await pods!.connect(pods!.pod, fam.loopback, 8080, APP), 'pod', 8080);
          landed(await pods!.connect(pods!.pod, fam.pod, 8080, APP), 'pod', 8080);
          landed(await pods!.connect(pods!.pod, fam.loopback, 8080, PROXY), 'pod', 8080);
        });

        it("sends the proxy's connection to its own pod IP through the inbound port", async function () {
          redirected(await pods!.connect(pods!.pod, fam.pod, 8080, PROXY), 15006, { address: fam.pod, port: 8080, family: fam.family });
          landed(await pods!.connect(pods!.pod, fam.pod, 15020, PROXY), 'pod', 15020);
        });
      });
    }

    // Mocha runs a suite's own tests before its nested suites: these come last, after the traffic checks.
    describe('afterwards', function () {
      it('changes nothing when run again', async function () {
        const r = await pods!.tsmeshInit(args);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await saves(pods!, 'nft'), installed);
      });

      it('--dry-run prints the restore input and changes nothing', async function () {
        const r = await pods!.tsmeshInit([...args, '--dry-run']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^# would run: iptables-nft-restore --noflush --wait=10\n# tsmesh ipv4 redirects/);
        assert.match(r.stdout, /# would run: ip6tables-nft-restore --noflush --wait=10\n/);
        // The jumps are in place already, so the input only refills tsmesh's chains.
        assert.ok(!r.stdout.includes('-A PREROUTING') && r.stdout.includes('-A TSMESH_OUTPUT'), r.stdout);
        assert.equal(await saves(pods!, 'nft'), installed);
      });

      it('--cleanup --dry-run prints what it would delete and changes nothing', async function () {
        const r = await pods!.tsmeshInit(['--cleanup', '--dry-run']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /# would run: iptables-nft-restore --noflush --wait=10\n# tsmesh cleanup/);
        assert.ok(r.stdout.includes(`-D OUTPUT -p tcp -m comment --comment "tsmesh/outbound" -j TSMESH_OUTPUT`), r.stdout);
        assert.ok(r.stdout.includes('-X TSMESH_REDIRECT'), r.stdout);
        assert.equal(await saves(pods!, 'nft'), installed);
      });

      it('--cleanup restores the rules from before', async function () {
        const r = await pods!.tsmeshInit(['--cleanup']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await saves(pods!, 'nft'), original);
        landed(await pods!.connect(pods!.pod, IPV4.peer, 80, APP), 'peer', 80);
        landed(await pods!.connect(pods!.peer, IPV6.pod, 8080), 'pod', 8080);
        const again = await pods!.tsmeshInit(['--cleanup']);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stderr, /nothing to remove/);
      });
    });
  });

  describe('an IPv4-only pod whose namespace already holds legacy rules', function () {
    let pods: TestPods | undefined;
    let original = '';

    before(async function () {
      pods = await TestPods.create({ ipv6: false });
      const r0 = await pods.exec(pods.pod, ['iptables-legacy', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.244.1.0/24', '-j', 'RETURN']);
      assert.equal(r0.code, 0, r0.stderr);
      original = await saves(pods, 'legacy');
      await pods.listen(pods.pod, 'pod', POD_PORTS);
      await pods.listen(pods.peer, 'peer', PEER_PORTS);
    });

    after(async function () {
      await pods?.destroy();
    });

    it('writes to the legacy backend, IPv4 only, and the redirects work', async function () {
      const r = await pods!.tsmeshInit([]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /"backend":"legacy"/);
      const legacy = await saves(pods!, 'legacy');
      const [v4 = '', v6 = ''] = legacy.split('## ip6tables-legacy-save\n');
      assert.ok(v4.includes(':TSMESH_OUTPUT - [0:0]') && !v6.includes('TSMESH'), legacy);
      const nft = await pods!.exec(pods!.pod, ['iptables-nft-save']);
      assert.ok(!nft.stdout.includes('TSMESH'), nft.stdout);
      redirected(await pods!.connect(pods!.pod, IPV4.peer, 80, APP), 15001, { address: IPV4.peer, port: 80, family: 'IPv4' });
      redirected(await pods!.connect(pods!.peer, IPV4.pod, 8080), 15006, { address: IPV4.pod, port: 8080, family: 'IPv4' });
      landed(await pods!.connect(pods!.pod, IPV4.peer, 80, PROXY), 'peer', 80);
    });

    it('re-runs without change and cleans up to the rules from before', async function () {
      const before = await saves(pods!, 'legacy');
      assert.equal((await pods!.tsmeshInit([])).code, 0);
      assert.equal(await saves(pods!, 'legacy'), before);
      const r = await pods!.tsmeshInit(['--cleanup']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await saves(pods!, 'legacy'), original);
    });
  });

  describe('without NET_ADMIN and NET_RAW', function () {
    let pods: TestPods | undefined;

    before(async function () {
      pods = await TestPods.create({ ipv6: false });
    });

    after(async function () {
      await pods?.destroy();
    });

    it('fails and says the container needs NET_ADMIN and NET_RAW', async function () {
      const before = await pods!.exec(pods!.pod, ['iptables-nft-save']);
      const r = await pods!.tsmeshInit([], ['setpriv', '--bounding-set=-net_admin,-net_raw']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /needs the NET_ADMIN and NET_RAW capabilities/);
      assert.equal((await pods!.exec(pods!.pod, ['iptables-nft-save'])).stdout, before.stdout);
    });

    it('as a non-root user too', async function () {
      const r = await pods!.exec(pods!.pod, [process.execPath, '--import', 'tsx', 'cli/main.ts', 'init'], APP);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /needs the NET_ADMIN and NET_RAW capabilities/);
    });
  });
});
