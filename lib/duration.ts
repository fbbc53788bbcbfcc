// Durations as operators write them in Kubernetes and Istio: "250ms", "30s",
// "1h30m". Plain numbers are refused: a unit-less "5" is the classic misread
// setting (seconds? milliseconds?), so it fails loudly instead.

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

export class DurationError extends Error {
  override name = 'DurationError';
}

/** Parses "1h", "90s", "1h30m", "250ms" to milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const s = text.trim();
  if (!DURATION.test(s))
    throw new DurationError(`${what} ${JSON.stringify(text)} is not a duration; write a number with a unit, e.g. 500ms, 30s, 5m, 1h`);
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Math.round(ms);
}

/** The shortest exact form: 3600000 -> "1h", 90000 -> "1m30s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = UNIT_MS[unit]!;
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
