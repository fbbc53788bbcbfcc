import { Counter, Histogram, type Registry } from 'prom-client';

export const ADMISSION_RESULTS = ['injected', 'skipped', 'refused', 'error'] as const;
export type AdmissionResult = (typeof ADMISSION_RESULTS)[number];

export interface WebhookMetrics {
  /** tsmesh_webhook_admissions_total{result}: the contract in DESIGN.md. */
  admissions: Counter<'result'>;
  /** Why pods were left alone, refused, or failed, by reason code. */
  reasons: Record<Exclude<AdmissionResult, 'injected'>, Counter<'reason'>>;
  durationSeconds: Histogram;
}

export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  const admissions = new Counter({
    name: 'tsmesh_webhook_admissions_total',
    help: 'Admission reviews answered, by result (injected, skipped, refused, error).',
    labelNames: ['result'],
    registers: [registry],
  });
  // Every result shows from the start, so a rate over it is 0 rather than absent.
  for (const result of ADMISSION_RESULTS) admissions.inc({ result }, 0);
  const reasonCounter = (result: string, help: string): Counter<'reason'> =>
    new Counter({ name: `tsmesh_webhook_${result}_total`, help, labelNames: ['reason'], registers: [registry] });
  return {
    admissions,
    reasons: {
      skipped: reasonCounter('skipped', 'Pods admitted without injection, by reason (host-network, already-injected, opted-out, ...).'),
      refused: reasonCounter('refused', 'Pods refused, by reason (bad-override, port-conflict, invalid-pod).'),
      error: reasonCounter('errors', 'Reviews that failed, by reason (bad-review, too-large, internal).'),
    },
    durationSeconds: new Histogram({
      name: 'tsmesh_webhook_admission_duration_seconds',
      help: 'Time from a parsed review to its answer (the patch built), excluding the network.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers: [registry],
    }),
  };
}
