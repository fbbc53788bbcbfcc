// What `tsmesh check` reports: lines of `ok`, `warn` (worth a look, not
// broken) or `fail` (broken, or about to break), each warn and fail line with
// how to fix it, grouped in sections; and the report as text.

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckLine {
  section: string;
  status: CheckStatus;
  message: string;
  /** How to fix it (warn and fail lines). */
  fix?: string;
}

const MARK: Record<CheckStatus, string> = { ok: '[ok]  ', warn: '[warn]', fail: '[FAIL]' };

/** The report as text: sections, one line per check, `fix:` under each problem, a summary. */
export function formatChecks(lines: readonly CheckLine[]): string {
  const out: string[] = [];
  let section = '';
  for (const l of lines) {
    if (l.section !== section) {
      section = l.section;
      out.push(out.length > 0 ? `\n${section}` : section);
    }
    out.push(`  ${MARK[l.status]} ${l.message}`);
    if (l.fix) out.push(`         fix: ${l.fix}`);
  }
  const count = (s: CheckStatus): number => lines.filter((l) => l.status === s).length;
  out.push('', `${count('fail') > 0 ? 'tsmesh check: FAILED' : 'tsmesh check: healthy'} (${count('ok')} ok, ${count('warn')} warnings, ${count('fail')} failures)`);
  return out.join('\n') + '\n';
}

export function checksFailed(lines: readonly CheckLine[]): boolean {
  return lines.some((l) => l.status === 'fail');
}
