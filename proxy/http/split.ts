// Traffic split: each request goes to one backend, chosen at random in
// proportion to the weights ("route 10% to the canary"). Backends with weight
// 0 get nothing; the choice is one random draw and a scan of a few weights.
import type { Handler } from './types.js';

export interface WeightedHandler {
  weight: number;
  handler: Handler;
}

export function splitByWeight(backends: readonly WeightedHandler[], random: () => number = Math.random): Handler {
  const live = backends.filter((b) => b.weight > 0);
  if (live.length === 0) throw new Error('splitByWeight: no backend has a weight above 0');
  if (live.length === 1) return live[0]!.handler;
  const handlers = live.map((b) => b.handler);
  const cumulative = new Float64Array(live.length);
  let total = 0;
  for (const [i, b] of live.entries()) cumulative[i] = total += b.weight;
  const lastIndex = live.length - 1;
  return (req) => {
    const r = random() * total;
    let i = 0;
    while (i < lastIndex && r >= cumulative[i]!) i++;
    return handlers[i]!(req);
  };
}
