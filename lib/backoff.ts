// Exponential backoff with jitter, capped: the delay before retry `attempt`
// (0 for the first retry). Jitter spreads the retries of many proxies that
// lost the CA at the same moment, so they do not come back in lockstep.

export interface BackoffOptions {
  /** The first delay, before jitter. */
  minMs: number;
  /** No delay exceeds this. */
  maxMs: number;
  /** Growth per attempt; 2 doubles. */
  factor: number;
  /** Fraction of the delay that is random: 0.5 gives [delay/2, delay]. */
  jitter: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = { minMs: 200, maxMs: 30_000, factor: 2, jitter: 0.5 };

export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxMs, opts.minMs * opts.factor ** Math.max(0, attempt));
  return Math.round(ceiling * (1 - opts.jitter * random()));
}
