// Which proxies to scrape in a cluster: every meshed endpoint of the model
// (an endpoint carries an identity only when its pod has the sidecar), at the
// proxy's admin port. A meshed pod behind no Service (a pure client) is not
// in the model, so it is not scraped.
import { parseWorkloadSpiffeId } from '../../ca/spiffe.js';
import { PROXY_DEFAULTS } from '../../proxy/env.js';
import type { MeshModel } from '../model.js';
import type { ScrapeTarget } from './view.js';

export function modelScrapeTargets(model: MeshModel | undefined, adminPort: number = PROXY_DEFAULTS.ADMIN_PORT): ScrapeTarget[] {
  const byAddress = new Map<string, ScrapeTarget>();
  for (const service of model?.services ?? []) {
    for (const ep of service.endpoints) {
      const id = ep.identity ? parseWorkloadSpiffeId(ep.identity) : undefined;
      if (!id || byAddress.has(ep.address)) continue;
      const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
      byAddress.set(ep.address, { workload: id.serviceAccount, namespace: id.namespace, url: `http://${host}:${adminPort}/metrics` });
    }
  }
  return [...byAddress.values()];
}
