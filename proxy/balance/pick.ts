// Chooses an endpoint for a request or a connection. Weighted random for now;
// the contract is what the HTTP and TCP paths depend on.
import type { ResolvedEndpoint } from '../config/table.js';

export function pickEndpoint(endpoints: readonly ResolvedEndpoint[], random: () => number = Math.random): ResolvedEndpoint | undefined {
  if (endpoints.length <= 1) return endpoints[0];
  let total = 0;
  for (const e of endpoints) total += e.weight;
  let r = random() * total;
  for (const e of endpoints) {
    r -= e.weight;
    if (r < 0) return e;
  }
  return endpoints[endpoints.length - 1];
}
