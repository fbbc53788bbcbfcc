import { Counter, Gauge, type Registry } from '../../lib/prom.js';

export interface IdentityMetrics {
  certExpiration: Gauge;
  renewals: Counter<'result'>;
}

export function createIdentityMetrics(registry: Registry): IdentityMetrics {
  return {
    certExpiration: new Gauge({
      name: 'tsmesh_identity_cert_expiration_timestamp_seconds',
      help: "When the proxy's workload certificate expires (Unix seconds); 0 until the first certificate.",
      registers: [registry],
    }),
    renewals: new Counter({
      name: 'tsmesh_identity_cert_renewals_total',
      help: 'Certificate requests to the CA, the first included, by result (success or failure).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
