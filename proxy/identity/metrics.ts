import { Counter, Gauge, type Registry } from '../../lib/prom.js';
import { family } from '../../contract/metrics.js';

export interface IdentityMetrics {
  certExpiration: Gauge;
  renewals: Counter<'result'>;
}

export function createIdentityMetrics(registry: Registry): IdentityMetrics {
  return {
    certExpiration: new Gauge({
      ...family('tsmesh_identity_cert_expiration_timestamp_seconds'),
      registers: [registry],
    }),
    renewals: new Counter({
      ...family('tsmesh_identity_cert_renewals_total'),
      registers: [registry],
    }),
  };
}
