// Kubernetes resource quantities ("100m", "64Mi", "1.5", "2e3"), parsed only
// far enough to refuse a malformed one and to compare a request with a limit.

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export const QUANTITY_HINT = 'expected a Kubernetes quantity like 100m or 0.5 (CPU), 64Mi or 1Gi (memory)';

/** The value of a non-negative quantity in base units (cores, bytes); undefined when the text is not one. */
export function parseQuantity(text: string): number | undefined {
  const m = QUANTITY.exec(text.trim());
  if (!m) return undefined;
  const number = Number(m[1]);
  const suffix = m[2] ?? '';
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX[suffix];
  if (scale === undefined || number < 0) return undefined;
  const value = number * scale;
  return Number.isFinite(value) ? value : undefined;
}
