// When to replace a certificate: at a fraction of its life, jittered so that
// proxies started together do not all renew at the same instant.

export interface RotationOptions {
  /** Fraction of the lifetime (notBefore..notAfter) at which to renew. */
  fraction: number;
  /** The fraction moves by up to this much either way. */
  jitter: number;
}

export const DEFAULT_ROTATION: Readonly<RotationOptions> = { fraction: 0.5, jitter: 0.1 };

/**
 * Never sooner than this fraction of the lifetime: a clock far ahead of the
 * CA's would otherwise make every new certificate look due and renew it in a
 * tight loop.
 */
export const MIN_ROTATION_DELAY_FRACTION = 0.05;

/** Milliseconds from `now` until the certificate valid over [notBefore, notAfter] should be renewed. */
export function rotationDelay(
  validity: { notBefore: Date; notAfter: Date },
  now: number,
  opts: RotationOptions = DEFAULT_ROTATION,
  random: () => number = Math.random,
): number {
  const start = validity.notBefore.getTime();
  const life = Math.max(0, validity.notAfter.getTime() - start);
  const fraction = opts.fraction + opts.jitter * (2 * random() - 1);
  return Math.round(Math.max(start + life * fraction - now, life * MIN_ROTATION_DELAY_FRACTION));
}
