// Which proxies to scrape in a cluster: every meshed endpoint of the model
// (an endpoint carries an identity only when its pod has the sidecar), at the
// proxy's admin port, and every proxy on this control plane's discovery
// stream, at the address it connects from (its pod IP): that is how a meshed
// pod behind no Service (a pure client), in no Service's endpoints, is found.
// A proxy behind no Service that streams from another replica is not seen.
import { parseWorkloadSpiffeId } from '../../contract/spiffe.js';
import { PROXY_DEFAULTS } from '../../contract/env.js';
import type { MeshModel } from '../model.js';
import type { ConnectedProxy } from '../stream.js';
import type { ScrapeTarget } from './view.js';

const metricsUrl = (address: string, adminPort: number): string => `http://${address.includes(':') ? `[${address}]` : address}:${adminPort}/metrics`;

/** modelScrapeTargets, then each connected proxy at an address not among them. */
export function scrapeTargets(model: MeshModel | undefined, connected: readonly ConnectedProxy[], adminPort: number = PROXY_DEFAULTS.ADMIN_PORT): ScrapeTarget[] {
  const targets = modelScrapeTargets(model, adminPort);
  const seen = new Set(targets.map((t) => t.url));
  for (const p of connected) {
    const url = metricsUrl(p.address, adminPort);
    if (seen.has(url)) continue;
    seen.add(url);
    targets.push({ workload: p.identity.serviceAccount, namespace: p.identity.namespace, url });
  }
  return targets;
}

export function modelScrapeTargets(model: MeshModel | undefined, adminPort: number = PROXY_DEFAULTS.ADMIN_PORT): ScrapeTarget[] {
  const byAddress = new Map<string, ScrapeTarget>();
  for (const service of model?.services ?? []) {
    for (const ep of service.endpoints) {
      const id = ep.identity ? parseWorkloadSpiffeId(ep.identity) : undefined;
      if (!id || byAddress.has(ep.address)) continue;
      byAddress.set(ep.address, { workload: id.serviceAccount, namespace: id.namespace, url: metricsUrl(ep.address, adminPort) });
    }
  }
  return [...byAddress.values()];
}
