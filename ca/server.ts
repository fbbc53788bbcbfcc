// The CA's HTTP API, mounted by the control plane on its TLS port 15012:
//   POST /v1/certificates   Authorization: Bearer <token>
//                           {"csr": "<PEM>", "ttlSeconds"?: n}  (or a raw PEM body)
//   GET  /v1/trust-bundle   the roots, PEM
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { CertificateAuthority } from './authority.js';
import type { Authenticator } from './authn/authenticator.js';
import { CaError } from './errors.js';
import type { CaMetrics } from './metrics.js';
import type { Logger } from '../lib/log.js';

/** Larger bodies get 413: a P-256 CSR in JSON is well under 1 KiB. */
export const MAX_CERTIFICATE_REQUEST_BYTES = 16 * 1024;

export interface CertificateResponse {
  spiffeId: string;
  serialNumber: string;
  /** PEM, leaf first, then intermediates. */
  certChain: string;
  /** PEM roots to verify peers with. */
  trustBundle: string;
  notBefore: string;
  expiresAt: string;
}

export interface CaRouterOptions {
  authority: CertificateAuthority;
  authenticator: Authenticator;
  metrics: CaMetrics;
  log: Logger;
}

function bearerToken(req: Request): string {
  const h = req.get('authorization') ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  if (!m) throw new CaError('unauthenticated', 'missing "Authorization: Bearer <token>"; send the projected ServiceAccount token (audience tsmesh-ca)');
  return m[1]!;
}

function readRequest(body: unknown): { csr: string; ttlSeconds?: number } {
  if (typeof body === 'string') return { csr: body };
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new CaError('bad-request', 'send JSON {"csr": "<PEM>"} with Content-Type application/json, or the PEM itself');
  const { csr, ttlSeconds } = body as Record<string, unknown>;
  if (typeof csr !== 'string') throw new CaError('bad-request', 'the JSON body needs a string field "csr" holding the PEM CSR');
  if (ttlSeconds === undefined) return { csr };
  if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds)) throw new CaError('bad-request', '"ttlSeconds" must be an integer');
  return { csr, ttlSeconds };
}

export function caRouter(opts: CaRouterOptions): Router {
  const { authority, authenticator, metrics, log } = opts;
  metrics.issuerExpiry.set(new Date(authority.issuer.validTo).getTime() / 1000);
  const router = express.Router();
  const limit = MAX_CERTIFICATE_REQUEST_BYTES;

  router.get('/v1/trust-bundle', (_req, res) => {
    res.type('application/x-pem-file').send(authority.trustBundle.toPem());
  });

  router.post(
    '/v1/certificates',
    express.json({ limit, strict: true }),
    express.text({ limit, type: ['text/plain', 'application/x-pem-file', 'application/pkcs10'] }),
    async (req: Request, res: Response) => {
      const token = bearerToken(req);
      const { csr, ttlSeconds } = readRequest(req.body);
      const caller = await authenticator.authenticate(token);
      const started = process.hrtime.bigint();
      const issued = authority.signWorkloadCsr(csr, caller.spiffeId, ttlSeconds);
      metrics.signingSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      metrics.issued.inc();
      log.debug('issued certificate', { spiffeId: issued.spiffeId, serial: issued.serialNumber, expiresAt: issued.notAfter.toISOString() });
      const out: CertificateResponse = {
        spiffeId: issued.spiffeId,
        serialNumber: issued.serialNumber,
        certChain: issued.certChainPem,
        trustBundle: issued.trustBundlePem,
        notBefore: issued.notBefore.toISOString(),
        expiresAt: issued.notAfter.toISOString(),
      };
      res.json(out);
    },
  );

  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = toCaError(err);
    metrics.errors.inc({ reason: e.code });
    if (e.status >= 500) log.error('certificate request failed', { code: e.code, error: e.message });
    else log.info('certificate request refused', { code: e.code, error: e.message });
    if (e.status === 401) res.set('WWW-Authenticate', 'Bearer realm="tsmesh-ca"');
    res.status(e.status).json({ error: { code: e.code, message: e.message } });
  });
  return router;
}

function toCaError(err: unknown): CaError {
  if (err instanceof CaError) return err;
  const e = err as { type?: string; status?: number; message?: string };
  if (e?.type === 'entity.too.large')
    return new CaError('too-large', `the request body is larger than ${MAX_CERTIFICATE_REQUEST_BYTES} bytes; send one CSR`);
  if (e?.type === 'entity.parse.failed') return new CaError('bad-request', `the body is not valid JSON: ${e.message ?? ''}`);
  if (e?.status && e.status >= 400 && e.status < 500) return new CaError('bad-request', e.message ?? 'bad request');
  return new CaError('internal', `internal error: ${e?.message ?? String(err)}`);
}
