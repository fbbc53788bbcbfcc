import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

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
    issued: new Counter({ name: 'tsmesh_ca_certificates_issued_total', help: 'Workload certificates issued.', registers: [registry] }),
    errors: new Counter({
      name: 'tsmesh_ca_certificate_errors_total',
      help: 'Certificate requests refused or failed, by reason (the CA error code).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    signingSeconds: new Histogram({
      name: 'tsmesh_ca_signing_duration_seconds',
      help: 'Time to verify a CSR and sign its certificate.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers: [registry],
    }),
    issuerExpiry: new Gauge({
      name: 'tsmesh_ca_issuer_expiration_timestamp_seconds',
      help: 'When the certificate that signs workload certificates expires (Unix seconds).',
      registers: [registry],
    }),
    certificateTtl: new Gauge({
      name: 'tsmesh_ca_certificate_ttl_seconds',
      help: 'Lifetime of the certificates the CA issues now (ConfigMap tsmesh-config certificateTtl, else --cert-ttl).',
      registers: [registry],
      collect() {
        this.set(ttlSeconds());
      },
    }),
  };
}
