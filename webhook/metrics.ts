import { Counter, Histogram, type Registry } from 'prom-client';
import { family } from '../contract/metrics.js';

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
    ...family('tsmesh_webhook_admissions_total'),
    registers: [registry],
  });
  // Every result shows from the start, so a rate over it is 0 rather than absent.
  for (const result of ADMISSION_RESULTS) admissions.inc({ result }, 0);
  const reasonCounter = (name: 'tsmesh_webhook_skipped_total' | 'tsmesh_webhook_refused_total' | 'tsmesh_webhook_errors_total'): Counter<'reason'> =>
    new Counter({ ...family(name), registers: [registry] });
  return {
    admissions,
    reasons: {
      skipped: reasonCounter('tsmesh_webhook_skipped_total'),
      refused: reasonCounter('tsmesh_webhook_refused_total'),
      error: reasonCounter('tsmesh_webhook_errors_total'),
    },
    durationSeconds: new Histogram({
      ...family('tsmesh_webhook_admission_duration_seconds'),
      registers: [registry],
    }),
  };
}
