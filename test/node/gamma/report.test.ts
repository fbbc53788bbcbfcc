// The reading of the conformance suite's report and `go test -v` output
// (gamma/report.ts) on text in the suite's own formats: the reasons the node
// test lists for failed and skipped tests come from here.
import assert from 'node:assert/strict';
import { featuresOf, outsideProfiles, parseReport, reasonOf, splitGoTestLog } from './report.js';

const LOG = `=== RUN   TestConformance
    conformance.go:117: Running conformance tests with:
=== RUN   TestConformance/MeshBasic
    conformance.go:77: 2026-12-07T21:40:00Z: Running MeshBasic, relying on the following features: Mesh-standard
=== PAUSE TestConformance/MeshBasic
=== RUN   TestConformance/MeshFrontend
    conformance.go:77: 2026-12-07T21:40:00Z: Running MeshFrontend, relying on the following features: Mesh-standard, HTTPRoute-standard, HTTPRouteResponseHeaderModification-standard
=== RUN   TestConformance/HTTPRouteWeight
    conformance.go:77: 2026-12-07T21:40:00Z: Running HTTPRouteWeight, relying on the following features: Gateway-standard, HTTPRoute-standard
=== RUN   TestConformance/MeshHTTPRouteMatching
=== RUN   TestConformance/MeshHTTPRouteMatching/0_request_to_'/'_should_go_to_echo-v1
=== CONT  TestConformance/MeshBasic
    pod.go:71: 2026-12-07T21:40:00Z: Got resp {200 echo-v1-abc}
=== NAME  TestConformance/MeshHTTPRouteMatching/0_request_to_'/'_should_go_to_echo-v1
    pod.go:71: 2026-12-07T21:40:01Z: Response expectation failed for request: [client http://echo/]  not ready yet: expected pod name to start with echo-v1, got echo-v2-xyz (after 1s)
    http.go:380:
        	Error Trace:	/conformance/utils/http/http.go:380
        	Error:      	Condition never satisfied
=== RUN   TestConformance/MeshConsumerRoute
    suite.go:480: Skipping MeshConsumerRoute: suite does not support MeshConsumerRoute
--- FAIL: TestConformance (40.00s)
    --- PASS: TestConformance/MeshBasic (3.10s)
    --- PASS: TestConformance/MeshFrontend (1.50s)
    --- FAIL: TestConformance/HTTPRouteWeight (1.00s)
    --- FAIL: TestConformance/MeshHTTPRouteMatching (30.20s)
        --- FAIL: TestConformance/MeshHTTPRouteMatching/0_request_to_'/'_should_go_to_echo-v1 (30.10s)
    --- SKIP: TestConformance/MeshConsumerRoute (0.00s)
`;

describe('test/node/gamma/report.ts: the conformance suite report and log', function () {
  it('splits go test -v output by test, with results and each test\'s lines', function () {
    const tests = splitGoTestLog(LOG);
    assert.equal(tests.get('TestConformance/MeshBasic')?.result, 'PASS');
    assert.equal(tests.get('TestConformance/MeshHTTPRouteMatching')?.result, 'FAIL');
    assert.equal(tests.get('TestConformance/MeshConsumerRoute')?.result, 'SKIP');
    assert.equal(tests.get('TestConformance/MeshHTTPRouteMatching')?.seconds, 30.2);
    assert.ok(tests.get('TestConformance/MeshBasic')?.lines.some((l) => l.includes('Got resp')));
  });

  it('gives the reason of a failed test from its subtests\' last telling lines, and a skipped one\'s from the suite', function () {
    const tests = splitGoTestLog(LOG);
    assert.equal(
      reasonOf(tests, 'MeshHTTPRouteMatching'),
      "2026-12-07T21:40:01Z: Response expectation failed for request: [client http://echo/] not ready yet: expected pod name to start with echo-v1, got echo-v2-xyz (after 1s) | Error: Condition never satisfied",
    );
    assert.equal(reasonOf(tests, 'MeshConsumerRoute', 1), 'Skipping MeshConsumerRoute: suite does not support MeshConsumerRoute');
    assert.equal(reasonOf(tests, 'NoSuchTest'), '(the suite logged nothing for it)');
  });

  it('names the mesh tests that ran with a feature outside the profiles, which the report leaves out', function () {
    const tests = splitGoTestLog(LOG);
    assert.deepEqual(featuresOf(tests.get('TestConformance/MeshFrontend')!), ['Mesh', 'HTTPRoute', 'HTTPRouteResponseHeaderModification']);
    // MeshBasic is in the profiles; HTTPRouteWeight is no mesh test; MeshConsumerRoute was skipped.
    assert.deepEqual(outsideProfiles(tests, ['Mesh', 'HTTPRoute', 'GRPCRoute', 'MeshConsumerRoute']), [{ name: 'MeshFrontend', result: 'PASS', features: ['HTTPRouteResponseHeaderModification'] }]);
  });

  it('reads a ConformanceReport and refuses anything else', function () {
    const r = parseReport(`apiVersion: gateway.networking.k8s.io/v1
kind: ConformanceReport
date: "2026-12-07T21:41:00Z"
gatewayAPIChannel: standard
gatewayAPIVersion: v1.6.3
implementation: {organization: tsmesh, project: tsmesh, url: https://tsmesh.dev, version: v0.1.0, contact: [maintainers]}
mode: default
profiles:
- name: MESH-HTTP
  summary: Core tests failed with 1 test failures.
  core:
    result: failure
    statistics: {Failed: 1, Passed: 3, Skipped: 0}
    failedTests: [MeshHTTPRouteMatching]
`);
    assert.deepEqual([r.profiles[0]?.name, r.profiles[0]?.core.result, r.profiles[0]?.core.failedTests], ['MESH-HTTP', 'failure', ['MeshHTTPRouteMatching']]);
    assert.throws(() => parseReport('kind: Pod\n'), /not a ConformanceReport/);
  });
});
