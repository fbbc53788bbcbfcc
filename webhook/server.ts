// HTTP for admission webhooks: POST an AdmissionReview, get one back. Knows
// HTTP, the review format (through admission.ts) and metrics; what to decide
// is the handler's business.
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../lib/log.js';
import { admissionResponse, BadReviewError, parseAdmissionReview, type AdmissionDecision, type AdmissionRequest } from './admission.js';
import type { AdmissionResult, WebhookMetrics } from './metrics.js';

/**
 * Larger bodies get 413. etcd stores objects up to 1.5 MiB, and a review of a
 * CREATE carries one object; 4 MiB leaves room for UPDATEs (object and
 * oldObject) should a rule ever select them.
 */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

export interface AdmissionVerdict {
  readonly result: Exclude<AdmissionResult, 'error'>;
  /** The skip or refusal reason code (for metrics and logs). */
  readonly reason?: string;
  readonly decision: AdmissionDecision;
}

/** Decides one request. May throw BadReviewError (answered 400); any other error is answered as a failed admission. */
export type AdmissionHandler = (request: AdmissionRequest) => AdmissionVerdict;

export interface AdmissionRouterOptions {
  /** Where the API server posts reviews, e.g. /inject. */
  readonly path: string;
  readonly handler: AdmissionHandler;
  readonly metrics: WebhookMetrics;
  readonly log: Logger;
  readonly maxBodyBytes?: number;
}

export function admissionRouter(opts: AdmissionRouterOptions): Router {
  const { path, handler, metrics, log } = opts;
  const limit = opts.maxBodyBytes ?? MAX_REVIEW_BYTES;
  const router = express.Router();

  const failed = (reason: string): void => {
    metrics.admissions.inc({ result: 'error' });
    metrics.reasons.error.inc({ reason });
  };

  // Any content type is read as JSON: the API server sends application/json, and curl users need not remember to.
  router.post(path, express.json({ limit, strict: true, type: () => true }), (req: Request, res: Response) => {
    let request: AdmissionRequest;
    try {
      request = parseAdmissionReview(req.body);
    } catch (e) {
      if (!(e instanceof BadReviewError)) throw e;
      failed('bad-review');
      log.warn('malformed admission review', { error: e.message });
      res.status(400).json({ error: { code: 'bad-review', message: e.message } });
      return;
    }
    const started = process.hrtime.bigint();
    let verdict: AdmissionVerdict;
    try {
      verdict = handler(request);
    } catch (e) {
      if (e instanceof BadReviewError) {
        failed('bad-review');
        log.warn('admission review not for this webhook', { uid: request.uid, error: e.message });
        res.status(400).json({ error: { code: 'bad-review', message: e.message } });
        return;
      }
      failed('internal');
      log.error('admission failed', { uid: request.uid, namespace: request.namespace, error: (e as Error).stack ?? String(e) });
      const message = `the tsmesh webhook failed on this pod (${(e as Error).message}); see the control plane's log`;
      res.json(admissionResponse(request.uid, { allowed: false, code: 500, message }));
      return;
    }
    metrics.durationSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    metrics.admissions.inc({ result: verdict.result });
    if (verdict.result !== 'injected') metrics.reasons[verdict.result].inc({ reason: verdict.reason ?? 'unspecified' });
    const fields = { uid: request.uid, namespace: request.namespace, name: request.name, reason: verdict.reason };
    if (verdict.result === 'refused') log.info('pod refused', { ...fields, message: verdict.decision.allowed ? undefined : verdict.decision.message });
    else log.debug(`pod ${verdict.result}`, fields);
    res.json(admissionResponse(request.uid, verdict.decision));
  });

  router.use(path, (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const e = err as { type?: string; status?: number; message?: string };
    if (e?.type === 'entity.too.large') {
      failed('too-large');
      res.status(413).json({ error: { code: 'too-large', message: `the AdmissionReview is larger than ${limit} bytes` } });
    } else if (e?.type === 'entity.parse.failed') {
      failed('bad-review');
      res.status(400).json({ error: { code: 'bad-review', message: `the body is not valid JSON: ${e.message ?? ''}` } });
    } else if (e?.status !== undefined && e.status >= 400 && e.status < 500) {
      failed('bad-review');
      res.status(e.status).json({ error: { code: 'bad-review', message: e.message ?? 'bad request' } });
    } else {
      next(err);
    }
  });
  return router;
}
