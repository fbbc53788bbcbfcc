import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { family } from '../contract/metrics.js';

export interface CaMetrics {
  issued: Counter;
  errors: Counter<'reason'>;
  signingSeconds: Histogram;
  issuerExpiry: Gauge;
  certificateTtl: Gauge;
}

/** `ttlSeconds`: the lifetime in force, read at every scrape (it can change at run time). */
export function createCaMetrics(registry: Registry, ttlSeconds: () => number): CaMetrics {
  return {
    issued: new Counter({ ...family('tsmesh_ca_certificates_issued_total'), registers: [registry] }),
    errors: new Counter({
      ...family('tsmesh_ca_certificate_errors_total'),
      registers: [registry],
    }),
    signingSeconds: new Histogram({
      ...family('tsmesh_ca_signing_duration_seconds'),
      registers: [registry],
    }),
    issuerExpiry: new Gauge({
      ...family('tsmesh_ca_issuer_expiration_timestamp_seconds'),
      registers: [registry],
    }),
    certificateTtl: new Gauge({
      ...family('tsmesh_ca_certificate_ttl_seconds'),
      registers: [registry],
      collect() {
        this.set(ttlSeconds());
      },
    }),
  };
}
