// The Gateway API's own conformance suite, its mesh profiles (GAMMA:
// MESH-HTTP and MESH-GRPC of sigs.k8s.io/gateway-api/conformance v1.6.3), run
// unmodified against tsmesh on a real kubelet: the suite's test binary
// applies its mesh manifests (echo Deployments and Services in two
// namespaces, which it labels for injection), its HTTPRoutes and GRPCRoutes,
// and runs Istio's echo client in the echo pods by kubectl exec; tsmesh's
// proxies carry every request. It writes the ConformanceReport implementations
// publish (test/node/.cache/gamma/report.yaml, printed); this file asserts
// every core test of both profiles passed and lists each extended feature's
// failed or skipped tests with the reason the suite logged.
//
// One node (test/node/node.sh) for the file, the mesh and the Gateway API
// CRDs installed by the CLI; the suite binary and the echo image are built by
// test/node/build.sh (test/node/gamma/build.sh). Skipped, saying why, when the
// machine cannot run the node (nodeTier()) or they are not built.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { INJECT_LABEL } from '../../contract/names.js';
import { nodeCacheDir, nodeTier, run } from './node.js';
import { meshOnNode, podTools } from './workloads.js';
import { outsideProfiles, parseReport, reasonOf, splitGoTestLog, type ConformanceReport, type TestLog } from './gamma/report.js';

const GAMMA = join(nodeCacheDir(), 'gamma');
const SUITE = join(GAMMA, 'suite', 'bin', 'conformance.test');
const ECHO_ARCHIVE = join(nodeCacheDir(), 'images', 'echo.tar');
/** Where the report and the suite's whole output are kept after the run. */
export const REPORT = join(GAMMA, 'report.yaml');
export const SUITE_LOG = join(GAMMA, 'suite.log');
/** The namespaces of the suite's mesh manifests. */
const NAMESPACES = ['gateway-conformance-mesh', 'gateway-conformance-mesh-consumer'];
const PROFILES = ['MESH-HTTP', 'MESH-GRPC'];
/** The Mesh extended features of v1.6.3 (pkg/features/mesh.go), in both profiles. */
const MESH_EXTENDED = [
  'MeshClusterIPMatching',
  'MeshConsumerRoute',
  'MeshHTTPRouteRewritePath',
  'MeshHTTPRouteSchemeRedirect',
  'MeshHTTPRouteRedirectPort',
  'MeshHTTPRouteRedirectPath',
  'MeshHTTPRouteBackendRequestHeaderModification',
  'MeshHTTPRouteQueryParamMatching',
  'MeshHTTPRouteNamedRouteRule',
];
/** Every feature of the two profiles: their core and the Mesh extended ones. */
const PROFILE_FEATURES = ['Mesh', 'HTTPRoute', 'GRPCRoute', ...MESH_EXTENDED];
/**
 * What tsmesh claims (--supported-features): every feature of the profiles,
 * and the HTTPRoute extended features some mesh tests also need (without
 * them the suite skips those tests, and the report, which counts a test in
 * a profile only when the profile has all its features, leaves them out).
 * Claimed, every mesh test runs, and a failure is reported with its reason
 * rather than hidden as unsupported.
 */
const SUPPORTED = [
  ...PROFILE_FEATURES,
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteParentRefPort',
];
/**
 * The suite's waits, shortened (seconds): a route takes effect in tsmesh
 * within a few seconds, and a failing expectation is retried for
 * MaxTimeToConsistency before it fails.
 */
const TIMEOUTS = 'MaxTimeToConsistency:15;NamespacesMustBeReady:180;DefaultTestTimeout:60';
const SUITE_TIMEOUT_MS = 12 * 60_000;

const version = (JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('real node: the Gateway API conformance suite, mesh profiles MESH-HTTP and MESH-GRPC (test/node/gamma)', function () {
  this.timeout(SUITE_TIMEOUT_MS + 120_000);

  before(function () {
    if (!nodeTier().ok) return; // meshOnNode says why and skips
    const missing = [SUITE, ECHO_ARCHIVE].filter((p) => !existsSync(p));
    if (missing.length > 0) {
      console.log(`      Gateway API conformance SKIPPED: ${missing.join(', ')} not built; run test/node/build.sh (npm run test:node)`);
      this.skip();
    }
  });
  const { kc, timed, node, teardownTest } = meshOnNode([]);
  const { diagnoseOnFailure } = podTools(kc);
  let report: ConformanceReport | undefined;
  let tests = new Map<string, TestLog>();

  before(async function () {
    // The echo image is the suite's own name for it, imported beside the node's four.
    const n = node();
    await timed('echo image imported', () =>
      run(n.enter[0]!, [...n.enter.slice(1), 'ctr', '--address', join(n.dir, 'containerd.sock'), '-n', 'k8s.io', 'images', 'import', '--no-unpack=false', ECHO_ARCHIVE], { timeoutMs: 120_000 }),
    );
    // The Gateway API CRDs are tsmesh install's (manifests/gateway-api-crds.yaml): the suite's own release, standard channel.
    const crds = JSON.parse(await kc(['get', 'crd', 'httproutes.gateway.networking.k8s.io', 'grpcroutes.gateway.networking.k8s.io', '-o', 'json'])) as {
      items: { metadata: { name: string; annotations?: Record<string, string> } }[];
    };
    assert.deepEqual(
      crds.items.map((c) => [c.metadata.name, c.metadata.annotations?.['gateway.networking.k8s.io/bundle-version'], c.metadata.annotations?.['gateway.networking.k8s.io/channel']]),
      [
        ['httproutes.gateway.networking.k8s.io', 'v1.6.3', 'standard'],
        ['grpcroutes.gateway.networking.k8s.io', 'v1.6.3', 'standard'],
      ],
      'tsmesh install installs the Gateway API CRDs of the suite\'s release',
    );
  });

  afterEach(diagnoseOnFailure(...NAMESPACES));

  it('the suite runs both mesh profiles against tsmesh and writes its ConformanceReport', async function () {
    mkdirSync(GAMMA, { recursive: true });
    rmSync(REPORT, { force: true });
    const args = [
      '-test.run=^TestConformance$',
      '-test.v',
      `-test.timeout=${SUITE_TIMEOUT_MS / 1000}s`,
      // A test's requests run side by side (each is a kubectl exec of the echo client); Go's default is GOMAXPROCS.
      '-test.parallel=8',
      `--conformance-profiles=${PROFILES.join(',')}`,
      `--supported-features=${SUPPORTED.join(',')}`,
      `--namespace-labels=${INJECT_LABEL}=enabled`,
      `--timeout-config-overrides=${TIMEOUTS}`,
      `--report-output=${REPORT}`,
      '--organization=tsmesh',
      '--project=tsmesh',
      // The report requires an address and a contact; the project publishes none yet (set both before publishing a report).
      `--url=${process.env['TSMESH_CONFORMANCE_URL'] ?? 'https://example.invalid/tsmesh'}`,
      `--version=v${version}`,
      `--contact=${process.env['TSMESH_CONFORMANCE_CONTACT'] ?? 'tsmesh maintainers'}`,
      // The node is stopped after the run: no need to wait for the base resources' deletion.
      '--cleanup-base-resources=false',
    ];
    console.log(`      ${SUITE} ${args.join(' ')}`);
    const log = createWriteStream(SUITE_LOG);
    let out = '';
    const code = await timed('conformance suite', () =>
      new Promise<number | null>((resolve, reject) => {
        const child = spawn(SUITE, args, { env: node().env, cwd: GAMMA, stdio: ['ignore', 'pipe', 'pipe'] });
        const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), SUITE_TIMEOUT_MS + 60_000);
        const take = (d: Buffer): void => {
          const s = d.toString();
          out += s;
          log.write(s);
          // Each test's result as it comes (the suite skips the Gateway profiles' tests: left out).
          for (const l of s.split('\n')) if (/^\s*--- (PASS|FAIL): TestConformance\/[^/\s]+ /.test(l)) console.log(`      ${l.trim()}`);
        };
        child.stdout.on('data', take);
        child.stderr.on('data', take);
        child.on('error', reject);
        child.on('close', (c) => {
          clearTimeout(timer);
          log.end();
          resolve(c);
        });
      }),
    );
    tests = splitGoTestLog(out);
    assert.ok(existsSync(REPORT), `the suite (exit ${code}) wrote no report at ${REPORT}; its output's end:\n${out.split('\n').slice(-40).join('\n')}`);
    const text = readFileSync(REPORT, 'utf8');
    console.log(`      the suite exited ${code}; its report (${REPORT}, whole output in ${SUITE_LOG}):\n${text.replace(/^/gm, '        ')}`);
    report = parseReport(text);
    assert.equal(report.gatewayAPIVersion, 'v1.6.3');
    assert.equal(report.gatewayAPIChannel, 'standard');
    assert.equal(report.implementation.project, 'tsmesh');
    assert.deepEqual(report.profiles.map((p) => p.name).sort(), [...PROFILES].sort());
    // The results of every test, with the reason of each that did not pass.
    const rows: string[] = [];
    for (const p of report.profiles) {
      for (const [kind, s] of [['core', p.core], ['extended', p.extended]] as const) {
        if (!s) continue;
        rows.push(`${p.name} ${kind}: ${s.result} (passed ${s.statistics.Passed}, failed ${s.statistics.Failed}, skipped ${s.statistics.Skipped})`);
        for (const t of s.failedTests ?? []) rows.push(`  FAILED ${t}: ${reasonOf(tests, t)}`);
        for (const t of s.skippedTests ?? []) rows.push(`  SKIPPED ${t}: ${reasonOf(tests, t, 1)}`);
        for (const f of s.unsupportedFeatures ?? []) rows.push(`  UNSUPPORTED ${f}: not claimed in --supported-features`);
      }
      assert.ok(p.core.statistics.Passed + p.core.statistics.Failed + p.core.statistics.Skipped > 0, `${p.name} ran no core test`);
    }
    // Mesh tests that also need an HTTPRoute extended feature outside both profiles (claimed above): run, but left out of the report.
    for (const t of outsideProfiles(tests, PROFILE_FEATURES)) {
      rows.push(`outside the profiles (${t.features.join(', ')}): ${t.result === 'PASS' ? `PASSED ${t.name}` : `FAILED ${t.name}: ${reasonOf(tests, t.name)}`}`);
    }
    console.log(rows.map((r) => `      ${r}`).join('\n'));
  });

  it('every core test of MESH-HTTP and MESH-GRPC passes', function () {
    if (!report) this.skip();
    const failures = report.profiles.flatMap((p) => [...(p.core.failedTests ?? []), ...(p.core.skippedTests ?? [])].map((t) => `${p.name} ${t}: ${reasonOf(tests, t)}`));
    assert.deepEqual(failures, [], `core tests that did not pass:\n${failures.join('\n')}`);
    for (const p of report.profiles) assert.equal(p.core.result, 'success', `${p.name} core: ${p.core.result}`);
  });

  teardownTest(NAMESPACES);
});
