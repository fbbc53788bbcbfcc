// Judging a run of the differential fuzzer: what each proxy did with each
// case (a verdict), where tsmesh falls short of the references (findings),
// and the table that shows it all. Pure functions of what the clients saw
// and what the app recorded (harness.ts).
import type { AppRecord } from './app.js';
import { readResponses, type Observation } from './client.js';
import { MARKER_IN_TARGET, type FuzzCase } from './corpus.js';
import type { Exception, PendingFix } from './exceptions.js';
import type { HarnessRun } from './harness.js';
import { TSMESH_PATHS } from './job.js';
import { fieldValue, readRequests, type Field, type RequestMessage, type ResponseMessage } from './wire.js';

/**
 * forwarded: every answer came from the app; refused: the proxy answered
 * with its own error status; closed: the proxy closed the connection instead
 * of answering (or before the rest of a pipeline); truncated: an answer was
 * cut by the close; timeout: the case had not ended within the bound.
 */
export type Kind = 'forwarded' | 'refused' | 'closed' | 'truncated' | 'timeout';

export interface Verdict {
  readonly kind: Kind;
  /** Answers of the app that reached the client. */
  readonly forwarded: number;
  /** The proxy's own status, when it refused. */
  readonly status: number | undefined;
  /** Requests of the case the app received (the canary after it left out), and how many of them were sent again (a retry). */
  readonly appSaw: number;
  readonly replays: number;
  /** Request boundaries or contents that differ between the client, the proxy and the app; a bad canary. */
  readonly problems: readonly string[];
  /** A few characters for the table: fwd, fwd×2, 400, fwd+400, closed, cut, wait. */
  readonly label: string;
  /** What the proxy said when it refused (its body or x-tsmesh-error), for the details. */
  readonly note: string;
}

/** The verdict of every proxy of the run on one case. */
export interface CaseResult {
  readonly case: FuzzCase;
  readonly verdicts: Readonly<Record<string, Verdict>>;
}

const isAppAnswer = (c: FuzzCase, r: ResponseMessage): boolean =>
  fieldValue(r.fields, 'x-fuzz-seq') !== undefined || fieldValue(r.fields, 'x-fuzz-app-error') !== undefined || (c.side === 'response' && r.status < 400);
const isFinal = (r: ResponseMessage): boolean => r.status >= 200 || r.status === 101;
const seqOf = (r: ResponseMessage): number | undefined => {
  const v = fieldValue(r.fields, 'x-fuzz-seq');
  return v === undefined ? undefined : Number(v);
};
const show = (s: string, n = 60): string => JSON.stringify(s.length > n ? `${s.slice(0, n)}...` : s);

/** The path of a request target (absolute-form loses its scheme and authority). */
function pathOf(target: string): string {
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*(.*)$/.exec(target);
  return m ? m[1] || '/' : target;
}

/** Fields a proxy may drop, add or rewrite: hop-by-hop ones, the framing, Host (absolute-form) and Expect. */
const NOT_END_TO_END = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'host', 'expect']);

function endToEnd(fields: readonly Field[]): Map<string, string> {
  const hop = new Set((fieldValue(fields, 'connection') ?? '').toLowerCase().split(',').map((t) => t.trim()));
  const out = new Map<string, string>();
  for (const [n, v] of fields) {
    const name = n.toLowerCase();
    if (NOT_END_TO_END.has(name) || hop.has(name)) continue;
    const prev = out.get(name);
    out.set(name, prev === undefined ? v : `${prev}, ${v}`);
  }
  return out;
}

/** How a request the client sent differs from what the app received for it. */
function differences(sent: RequestMessage, got: AppRecord): string[] {
  const out: string[] = [];
  const what = `request ${show(`${sent.method} ${sent.target}`, 50)}`;
  if (sent.method !== got.method) out.push(`${what}: the app got method ${show(got.method)}`);
  if (pathOf(sent.target) !== pathOf(got.target)) out.push(`${what}: the app got target ${show(got.target)}`);
  if (got.bodyLength !== sent.body.length || (got.bodyLength <= got.body.length && got.body !== sent.body)) out.push(`${what}: body of ${sent.body.length} bytes ${show(sent.body, 30)}, the app got ${got.bodyLength} ${show(got.body, 30)}`);
  // Host: the target's authority for absolute-form (RFC 9112 3.2.2), else the client's Host.
  const authority = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)/.exec(sent.target)?.[1];
  const host = authority ?? fieldValue(sent.fields, 'host');
  const hostAtApp = fieldValue(got.fields, 'host');
  if (host !== undefined && hostAtApp !== host) out.push(`${what}: Host ${show(host, 40)} reached the app as ${hostAtApp === undefined ? 'none' : show(hostAtApp, 40)}`);
  const theirs = endToEnd(got.fields);
  for (const [name, value] of endToEnd(sent.fields)) {
    const at = theirs.get(name);
    if (at === undefined) out.push(`${what}: header ${show(name, 30)} did not reach the app`);
    else if (at !== value) out.push(`${what}: header ${show(name, 30)} sent as ${show(value, 40)} reached the app as ${show(at, 40)}`);
  }
  return out;
}

/** The first line of what a proxy refused with: its x-tsmesh-error and body, or its status line. */
function noteOf(r: ResponseMessage): string {
  const reason = fieldValue(r.fields, 'x-tsmesh-error');
  const body = r.body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return [reason, body.slice(0, 120)].filter(Boolean).join(': ') || r.head.split(/\r?\n/)[0]!;
}

function label(kind: Kind, forwarded: number, status: number | undefined): string {
  const before = forwarded > 0 ? `fwd${forwarded > 1 ? `×${forwarded}` : ''}+` : '';
  switch (kind) {
    case 'forwarded':
      return `fwd${forwarded > 1 ? `×${forwarded}` : ''}`;
    case 'refused':
      return `${before}${status}`;
    case 'closed':
      return `${before}closed`;
    case 'truncated':
      return `${before}cut`;
    case 'timeout':
      return `${before}wait`;
  }
}

/** What the canary after the case got: undefined when its own answer, else the problem. */
function canaryProblem(canary: Observation, record: AppRecord | undefined): string | undefined {
  const r = readResponses(canary.received, canary.end === 'closed');
  const finals = r.responses.filter(isFinal);
  const seq = finals.length === 1 ? seqOf(finals[0]!) : undefined;
  if (record !== undefined && seq === record.seq && finals[0]!.status === 200) return undefined;
  const got = finals.map((f) => `${f.status}${seqOf(f) === undefined ? '' : ` seq ${seqOf(f)}`} ${show(f.body, 20)}`).join(', ') || `nothing (${canary.end})`;
  return `the next request (a plain GET on a new connection) got ${got}${record === undefined ? ', and the app never saw it' : `, its answer was seq ${record.seq}`}`;
}

/** The verdict of one proxy on one case. `records`: what the app recorded of the case through that proxy. */
export function judge(c: FuzzCase, obs: Observation, canary: Observation, records: readonly AppRecord[]): Verdict {
  const m = MARKER_IN_TARGET.exec(c.bytes)?.[0];
  const closed = obs.end === 'closed';
  const read = readResponses(obs.received, closed);
  const finals = read.responses.filter(isFinal);
  const problems: string[] = [];
  if (obs.error !== undefined) problems.push(`the connection failed: ${obs.error}`);
  if (read.error !== undefined) problems.push(`the proxy's answer does not read as HTTP/1.1: ${read.error} in ${show(read.rest)}`);
  const fromApp = finals.filter((r) => isAppAnswer(c, r));
  const refusal = finals.find((r) => !isAppAnswer(c, r) && r.status >= 400);
  for (const r of finals) if (!isAppAnswer(c, r) && r.status < 400) problems.push(`an answer from neither the app nor a refusal: ${show(r.head.split(/\r?\n/)[0]!)}`);
  const pending = read.rest !== '' || read.error !== undefined;
  let kind: Kind;
  if (refusal) kind = 'refused';
  else if (obs.end === 'bound') kind = finals.length === 0 || pending ? 'timeout' : 'forwarded';
  else if (closed) {
    const last = finals.at(-1);
    const announced = last !== undefined && ((fieldValue(last.fields, 'connection') ?? '').toLowerCase().includes('close') || last.closeDelimited || last.version === 'HTTP/1.0');
    kind = pending ? 'truncated' : announced ? 'forwarded' : 'closed';
  } else kind = 'forwarded';

  const mine = records.filter((r) => (r.marker === m || (r.marker === undefined && r.during === m)) && !r.target.endsWith('/canary'));
  for (const r of mine) {
    if (r.error !== undefined) problems.push(`the app could not read what the proxy sent: ${r.error} in ${show(r.raw)}`);
    else if (r.marker === undefined) problems.push(`the app received a request without the case's marker: ${show(r.raw.split(/\r?\n/)[0]!)}`);
  }
  const seen = mine.filter((r) => r.error === undefined).sort((a, b) => a.seq - b.seq);
  // A request the proxy sent again (the same method, target and body: a retry after its connection
  // failed) is one request to the client, not a boundary; each group is one request.
  const groups = new Map<string, AppRecord[]>();
  for (const r of seen) {
    const key = `${r.method} ${r.target} ${r.bodyLength} ${r.body}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const distinct = [...groups.values()];
  const replays = seen.length - distinct.length;
  if (c.side === 'response') {
    if (distinct.length !== 1) problems.push(`the app received ${distinct.length} different requests for the one the client sent`);
  } else {
    const answered = new Set(fromApp.map(seqOf));
    for (const group of distinct) {
      const r = group[0]!;
      if (!group.some((g) => answered.has(g.seq))) problems.push(`the app received request seq ${r.seq} (${show(`${r.method} ${r.target}`, 50)}) and the client never got its answer`);
    }
    const theirs = new Set(seen.map((r) => r.seq));
    for (const s of answered) if (s !== undefined && !theirs.has(s)) problems.push(`the client got the answer to another request (seq ${s})`);
    const sent = readRequests(c.bytes).requests;
    for (let i = 0; i < Math.min(sent.length, distinct.length); i++) problems.push(...differences(sent[i]!, distinct[i]![0]!));
  }
  const canaryRecord = records.find((r) => r.marker === m && r.target.endsWith('/canary'));
  const bad = canaryProblem(canary, canaryRecord);
  if (bad !== undefined) problems.push(bad);

  return {
    kind,
    forwarded: fromApp.length,
    status: refusal?.status,
    appSaw: seen.length,
    replays,
    problems,
    label: label(kind, fromApp.length, refusal?.status),
    note: refusal ? noteOf(refusal) : '',
  };
}

/** Every case's verdicts. */
export function judgeRun(run: HarnessRun): CaseResult[] {
  const byMarker = new Map<string, AppRecord[]>();
  for (const r of run.records) {
    const key = `${r.proxy} ${r.marker ?? r.during}`;
    byMarker.set(key, [...(byMarker.get(key) ?? []), r]);
  }
  return run.cases.map((c, i) => {
    const m = MARKER_IN_TARGET.exec(c.bytes)?.[0];
    return {
      case: c,
      verdicts: Object.fromEntries(Object.entries(run.proxies).map(([proxy, l]) => [proxy, judge(c, l.observations[i]!, l.canaries[i]!, byMarker.get(`${proxy} ${m}`) ?? [])])),
    };
  });
}

/**
 * Where tsmesh falls short on a case: laxer (a reference that counts refused
 * or closed and tsmesh forwarded, or forwarded more), a wait (tsmesh had not
 * answered within the bound where a reference had), or a boundary (the app
 * saw requests tsmesh did not answer, or contents other than the client's).
 */
export interface Finding {
  readonly case: FuzzCase;
  /** Which of tsmesh's paths (job.ts). */
  readonly path: string;
  readonly kind: 'laxer' | 'wait' | 'boundary';
  readonly detail: string;
}

const rejects = (v: Verdict): boolean => v.kind === 'refused' || v.kind === 'closed' || v.kind === 'truncated';

export function findingsOf(result: CaseResult, exceptions: readonly Exception[]): Finding[] {
  const c = result.case;
  const out: Finding[] = [];
  const counted = Object.entries(result.verdicts).filter(([name]) => !TSMESH_PATHS.includes(name) && !exceptions.some((e) => e.reference === name && e.matches(c)));
  for (const path of TSMESH_PATHS) {
    const t = result.verdicts[path];
    if (!t) continue;
    for (const [name, v] of counted) {
      if (rejects(v) && t.kind !== 'timeout' && (!rejects(t) || t.forwarded > v.forwarded)) out.push({ case: c, path, kind: 'laxer', detail: `${name} ${v.label}${v.note ? ` (${v.note.slice(0, 60)})` : ''}, ${path} ${t.label}` });
    }
    if (t.kind === 'timeout' && counted.some(([, v]) => v.kind !== 'timeout')) out.push({ case: c, path, kind: 'wait', detail: `${path} had not answered in the bound; ${counted.map(([n, v]) => `${n} ${v.label}`).join(', ')}` });
    for (const p of t.problems) out.push({ case: c, path, kind: 'boundary', detail: `${path}: ${p}` });
  }
  return out;
}

/** The findings of a run, split into failures and those a pending fix covers. */
export function assess(results: readonly CaseResult[], exceptions: readonly Exception[], pendingFixOf: (f: Finding) => PendingFix | undefined): { failures: Finding[]; pending: { finding: Finding; fix: PendingFix }[] } {
  const failures: Finding[] = [];
  const covered: { finding: Finding; fix: PendingFix }[] = [];
  for (const r of results) {
    for (const f of findingsOf(r, exceptions)) {
      const fix = pendingFixOf(f);
      if (fix) covered.push({ finding: f, fix });
      else failures.push(f);
    }
  }
  return { failures, pending: covered };
}

const pad = (s: string, n: number): string => (s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length));

/** Classes × proxies (how many cases of each verdict), then every case on which the proxies differ, or that has a problem. */
export function table(results: readonly CaseResult[]): string {
  if (results.length === 0) return 'no cases';
  const proxies = Object.keys(results[0]!.verdicts);
  const classes = [...new Set(results.map((r) => r.case.cls))];
  const summary = (rs: readonly CaseResult[], p: string): string => {
    const counts = new Map<string, number>();
    for (const r of rs) {
      const v = r.verdicts[p]!;
      const key = v.kind === 'refused' ? `${v.status}` : v.kind === 'forwarded' ? 'fwd' : v.kind === 'truncated' ? 'cut' : v.kind === 'timeout' ? 'wait' : 'closed';
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}:${n}`).join(' ');
  };
  const w = [Math.max(5, ...classes.map((c) => c.length)) + 2, ...proxies.map(() => 28)];
  const lines = [`${pad('class', w[0]!)}${pad('n', 5)}${proxies.map((p, i) => pad(p, w[i + 1]!)).join('')}`];
  for (const cls of classes) {
    const rs = results.filter((r) => r.case.cls === cls);
    lines.push(`${pad(cls, w[0]!)}${pad(String(rs.length), 5)}${proxies.map((p, i) => pad(summary(rs, p), w[i + 1]!)).join('')}`);
  }
  // Refusals differ by status (400, 501, 422) without differing in what they mean.
  const gist = (v: Verdict): string => `${v.kind === 'refused' ? 'refused' : v.kind} ${v.forwarded}`;
  const differing = results.filter((r) => new Set(proxies.map((p) => gist(r.verdicts[p]!))).size > 1 || TSMESH_PATHS.some((p) => (r.verdicts[p]?.problems.length ?? 0) > 0));
  if (differing.length > 0) {
    const idw = Math.max(...differing.map((r) => r.case.id.length)) + 2;
    lines.push('', `cases where the proxies differ (${differing.length}):`, `${pad('case', idw)}${proxies.map((p) => pad(p, 12)).join('')}`);
    for (const r of differing) {
      lines.push(`${pad(r.case.id, idw)}${proxies.map((p) => pad(r.verdicts[p]!.label, 12)).join('')}`);
      const notes = new Set(TSMESH_PATHS.map((p) => r.verdicts[p]?.note ?? '').filter(Boolean));
      for (const note of notes) lines.push(`${' '.repeat(idw)}tsmesh: ${note.slice(0, 140)}`);
      for (const p of proxies) if (r.verdicts[p]!.replays > 0) lines.push(`${' '.repeat(idw)}${p} sent the request to the app again after its connection failed (${r.verdicts[p]!.replays}x)`);
      for (const p of TSMESH_PATHS) for (const problem of r.verdicts[p]?.problems ?? []) lines.push(`${' '.repeat(idw)}! ${p}: ${problem.slice(0, 200)}`);
    }
  }
  return lines.join('\n');
}

/** A case as it can be pasted back into the corpus or replayed. */
export function describeCase(c: FuzzCase): string {
  return c.side === 'request' ? `${c.id} ${JSON.stringify(c.bytes)}${c.pieces ? ` in ${c.pieces} pieces` : ''}` : `${c.id} reply ${JSON.stringify(c.reply.join(''))}${c.split ? ' in pieces' : ''}${c.close ? ', then close' : ''}`;
}
