// Reading what the Gateway API conformance suite leaves behind: its report
// (the ConformanceReport YAML of sigs.k8s.io/gateway-api/conformance/apis/v1,
// as implementations publish it) and its `go test -v` output, where the
// reasons of each failed or skipped test are (the report names the tests
// only).
import { parse } from 'yaml';

/** The parts of one status of a profile (core or extended) the node test reads. */
export interface ProfileStatus {
  result: string;
  statistics: { Passed: number; Failed: number; Skipped: number };
  skippedTests?: string[];
  failedTests?: string[];
  supportedFeatures?: string[];
  unsupportedFeatures?: string[];
}
export interface ProfileReport {
  name: string;
  summary: string;
  core: ProfileStatus;
  extended?: ProfileStatus;
}
export interface ConformanceReport {
  apiVersion: string;
  kind: string;
  implementation: { organization: string; project: string; url: string; version: string; contact: string[] };
  date: string;
  gatewayAPIVersion: string;
  gatewayAPIChannel: string;
  mode: string;
  profiles: ProfileReport[];
}

export function parseReport(text: string): ConformanceReport {
  const r = parse(text) as ConformanceReport | null;
  if (!r || r.kind !== 'ConformanceReport' || !Array.isArray(r.profiles)) throw new Error(`not a ConformanceReport:\n${text.slice(0, 500)}`);
  return r;
}

/** One test of the suite as `go test -v` told it: its result and the lines it logged. */
export interface TestLog {
  result?: 'PASS' | 'FAIL' | 'SKIP';
  seconds?: number;
  lines: string[];
}

/**
 * Splits `go test -v` output by test: the lines after `=== RUN|CONT|NAME`
 * belong to that test, and so do the indented lines after a `--- SKIP|FAIL`
 * (the reason Go prints there). Keyed by the full name
 * (TestConformance/MeshHTTPRouteMatching/...).
 */
export function splitGoTestLog(text: string): Map<string, TestLog> {
  const tests = new Map<string, TestLog>();
  const of = (name: string): TestLog => {
    let t = tests.get(name);
    if (!t) tests.set(name, (t = { lines: [] }));
    return t;
  };
  let current = '';
  for (const line of text.split('\n')) {
    const switched = /^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)/.exec(line);
    if (switched) {
      current = switched[1]!;
      of(current);
      continue;
    }
    const ended = /^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)/.exec(line);
    if (ended) {
      current = ended[2]!;
      Object.assign(of(current), { result: ended[1], seconds: Number(ended[3]) });
      continue;
    }
    if (current && line.trim() !== '') of(current).lines.push(line.trim());
  }
  return tests;
}

/** Why a test of the suite (by its short name) failed or was skipped: the last lines that say so, from it and its subtests. */
export function reasonOf(tests: Map<string, TestLog>, shortName: string, max = 2): string {
  const prefix = `TestConformance/${shortName}`;
  const lines = [...tests].filter(([name]) => name === prefix || name.startsWith(`${prefix}/`)).flatMap(([, t]) => t.lines);
  const telling = lines.filter((l) => /Error:|expected|wanted|failed|not ready yet|Skipping|skip|does not support|timed out|panic/i.test(l) && !/^Error Trace:/.test(l));
  const picked = (telling.length > 0 ? telling : lines).slice(-max);
  // Drop Go's file:line prefix; keep each line short enough to read in a table.
  return picked.map((l) => l.replace(/^[\w.-]+\.go:\d+:\s*/, '').replace(/\s+/g, ' ').slice(0, 400)).join(' | ') || '(the suite logged nothing for it)';
}

/** The features a test of the suite relies on, as it logged them ("Running X, relying on the following features: Mesh-standard, ..."), without their channel. */
export function featuresOf(t: TestLog): string[] | undefined {
  const line = t.lines.map((l) => /relying on the following features: (.*)/.exec(l)?.[1]).find((f) => f !== undefined);
  return line?.split(',').map((f) => f.trim().replace(/-[a-z]+$/, ''));
}

/**
 * The mesh tests that ran (passed or failed) though some feature of theirs is
 * in no profile of the run: the report counts a test in a profile only when
 * the profile has all its features, so it leaves these out. Each with those
 * features.
 */
export function outsideProfiles(tests: Map<string, TestLog>, profileFeatures: readonly string[]): { name: string; result: 'PASS' | 'FAIL'; features: string[] }[] {
  const out: { name: string; result: 'PASS' | 'FAIL'; features: string[] }[] = [];
  for (const [full, t] of tests) {
    const name = /^TestConformance\/([^/]+)$/.exec(full)?.[1];
    const features = featuresOf(t);
    if (!name || !features?.includes('Mesh') || (t.result !== 'PASS' && t.result !== 'FAIL')) continue;
    const outside = features.filter((f) => !profileFeatures.includes(f));
    if (outside.length > 0) out.push({ name, result: t.result, features: outside });
  }
  return out;
}
