// The proxy's workload identity: a key made in memory, a certificate from the
// CA, renewed with a new key at about half its life, and listeners told of
// each change so the TLS servers and client pools swap it in place.
import type { KeyObject } from 'node:crypto';
import type { Registry } from 'prom-client';
import { buildCsrPem } from '../../ca/csr.js';
import type { Logger } from '../../lib/log.js';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from '../../lib/backoff.js';
import type { RequestCertificate } from './ca-client.js';
import { credentialsFromResponse } from './credentials.js';
import { IdentityError } from './errors.js';
import { createIdentityMetrics, type IdentityMetrics } from './metrics.js';
import { DEFAULT_ROTATION, rotationDelay, type RotationOptions } from './rotation.js';
import { systemScheduler, type Scheduler, type TimerHandle } from '../../lib/scheduler.js';
import type { IdentitySource, WorkloadCredentials } from './types.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { generateKeyPairSync } = process.getBuiltinModule('node:crypto');

export interface IdentityManagerOptions {
  /** The CA call (createCaClient in production, a function in tests). */
  requestCertificate: RequestCertificate;
  /** Registers tsmesh_identity_cert_expiration_timestamp_seconds and tsmesh_identity_cert_renewals_total. */
  registry: Registry;
  log: Logger;
  /** The identity this proxy expects (from its namespace and service account); sent in the CSR and checked in the answer. */
  spiffeId?: string;
  scheduler?: Scheduler;
  random?: () => number;
  backoff?: Partial<BackoffOptions>;
  rotation?: Partial<RotationOptions>;
  /** renewNow waits up to this long (at random), so proxies told at once do not all ask the CA at once (default 2 s). */
  renewNowSpreadMs?: number;
}

/** renewNow renews at most this often: a CA that still signs under a retired root must not make a proxy renew in a loop. */
export const RENEW_NOW_MIN_INTERVAL_MS = 5_000;

export class IdentityManager implements IdentitySource {
  /** Resolves with the first certificate; rejects only if stop() comes first. */
  readonly ready: Promise<WorkloadCredentials>;
  private resolveReady!: (creds: WorkloadCredentials) => void;
  private rejectReady!: (e: Error) => void;

  private readonly scheduler: Scheduler;
  private readonly random: () => number;
  private readonly backoff: BackoffOptions;
  private readonly rotation: RotationOptions;
  private readonly metrics: IdentityMetrics;
  private readonly listeners = new Set<(creds: WorkloadCredentials) => void>();

  private creds: WorkloadCredentials | undefined;
  private state: 'new' | 'running' | 'stopped' = 'new';
  private timer: TimerHandle | undefined;
  private inFlight: AbortController | undefined;
  private failures = 0;
  private lastError: Error | undefined;
  /** When renewNow last renewed (ms); a renewal it scheduled is pending while `forced` is set. */
  private lastForcedAt = -Infinity;
  private forced = false;

  constructor(private readonly opts: IdentityManagerOptions) {
    this.scheduler = opts.scheduler ?? systemScheduler;
    this.random = opts.random ?? Math.random;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.rotation = { ...DEFAULT_ROTATION, ...opts.rotation };
    this.metrics = createIdentityMetrics(opts.registry);
    this.ready = new Promise<WorkloadCredentials>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A caller that never awaits `ready` must not see an unhandled rejection on stop().
    this.ready.catch(() => {});
  }

  /** Asks the CA for the first certificate, retrying until it comes; the returned promise is `ready`. */
  start(): Promise<WorkloadCredentials> {
    if (this.state === 'new') {
      this.state = 'running';
      void this.renew();
    }
    return this.ready;
  }

  /** Cancels the pending renewal or retry and aborts a request in flight. The credentials stay readable. */
  stop(): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight?.abort();
    if (!this.creds) this.rejectReady(new Error('the identity manager stopped before the CA issued a certificate'));
  }

  current(): WorkloadCredentials | undefined {
    return this.creds;
  }

  onChange(listener: (creds: WorkloadCredentials) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Renews soon instead of at half-life: the control plane named the root of
   * this certificate retired (a root rotation). The certificate in force
   * keeps serving until the new one is installed; open connections are not
   * touched. Ignored before the first certificate, while a renewal is on its
   * way, and within RENEW_NOW_MIN_INTERVAL_MS of the last one it caused.
   */
  renewNow(reason: string): void {
    if (this.state !== 'running' || !this.creds || this.inFlight || this.forced) return;
    const now = this.scheduler.now();
    const delay = Math.max(0, this.lastForcedAt + RENEW_NOW_MIN_INTERVAL_MS - now) + Math.round(this.random() * (this.opts.renewNowSpreadMs ?? 2000));
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer);
    this.forced = true;
    this.opts.log.info('renewing the workload certificate now', { reason, inMs: delay });
    this.timer = this.scheduler.setTimeout(() => {
      this.forced = false;
      this.lastForcedAt = this.scheduler.now();
      void this.renew();
    }, delay);
  }

  /** For /ready: undefined while a certificate in its validity is held, else why not. */
  notReadyReason(): string | undefined {
    const why = this.lastError ? ` (last CA request: ${this.lastError.message})` : '';
    if (!this.creds) return `no certificate from the CA yet${why}`;
    if (this.scheduler.now() >= this.creds.notAfter.getTime()) return `the certificate expired at ${this.creds.notAfter.toISOString()}${why}`;
    return undefined;
  }

  private async renew(): Promise<void> {
    this.timer = undefined;
    const key: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const abort = new AbortController();
    this.inFlight = abort;
    let creds: WorkloadCredentials;
    try {
      const res = await this.opts.requestCertificate(buildCsrPem(key, this.opts.spiffeId), abort.signal);
      if (this.state === 'stopped') return;
      creds = credentialsFromResponse(res, key, this.opts.spiffeId);
    } catch (e) {
      if (this.state !== 'stopped') this.failed(e as Error);
      return;
    } finally {
      this.inFlight = undefined;
    }
    this.install(creds);
  }

  private install(creds: WorkloadCredentials): void {
    const first = !this.creds;
    this.creds = creds;
    this.failures = 0;
    this.lastError = undefined;
    this.metrics.renewals.inc({ result: 'success' });
    this.metrics.certExpiration.set(creds.notAfter.getTime() / 1000);
    const now = this.scheduler.now();
    // The life that counts starts when the certificate arrives: the CA backdates
    // notBefore for clock skew, and with a short TTL that backdating would
    // otherwise put the half-life at the moment of issue.
    // A clock outside the validity keeps the whole validity, so the 5% floor holds.
    const inside = now >= creds.notBefore.getTime() && now < creds.notAfter.getTime();
    const from = inside ? now : creds.notBefore.getTime();
    const delay = rotationDelay({ notBefore: new Date(from), notAfter: creds.notAfter }, now, this.rotation, this.random);
    this.opts.log.info(first ? 'obtained workload certificate' : 'rotated workload certificate', {
      spiffeId: creds.spiffeId,
      notAfter: creds.notAfter.toISOString(),
      renewInSeconds: Math.round(delay / 1000),
    });
    if (now < creds.notBefore.getTime() || now >= creds.notAfter.getTime())
      this.opts.log.warn("this machine's clock is outside the new certificate's validity; check the node's time synchronisation", {
        now: new Date(now).toISOString(),
        notBefore: creds.notBefore.toISOString(),
        notAfter: creds.notAfter.toISOString(),
      });
    this.timer = this.scheduler.setTimeout(() => void this.renew(), delay);
    if (first) this.resolveReady(creds);
    for (const listener of this.listeners) {
      try {
        listener(creds);
      } catch (e) {
        this.opts.log.error('a credentials listener failed; it keeps the previous certificate', { error: (e as Error).message });
      }
    }
  }

  private failed(e: Error): void {
    this.lastError = e;
    this.metrics.renewals.inc({ result: 'failure' });
    const retryAfter = e instanceof IdentityError ? (e.details.retryAfterMs ?? 0) : 0;
    const delay = Math.min(this.backoff.maxMs, Math.max(backoffDelay(this.failures, this.backoff, this.random), retryAfter));
    this.failures += 1;
    const fields: Record<string, unknown> = {
      code: e instanceof IdentityError ? e.code : 'internal',
      ...(e instanceof IdentityError && e.details.status !== undefined ? { status: e.details.status } : {}),
      ...(e instanceof IdentityError && e.details.caCode !== undefined ? { caCode: e.details.caCode } : {}),
      error: e.message,
      attempt: this.failures,
      retryInMs: delay,
      ...(this.creds ? { currentNotAfter: this.creds.notAfter.toISOString() } : {}),
    };
    const msg = this.creds ? 'certificate renewal failed; retrying' : 'cannot get a certificate from the CA; retrying';
    if (e instanceof IdentityError && e.transient) this.opts.log.warn(msg, fields);
    else this.opts.log.error(msg, fields);
    this.timer = this.scheduler.setTimeout(() => void this.renew(), delay);
  }
}
