// What every check of `tsmesh check` works with: the API, the options, the
// report it adds lines to, and what earlier sections learned that later ones
// need (the trust domain, the certificate lifetime, the mesh's roots); and
// the pieces of message text several sections share.
import { CONTROL_PLANE_NAME, MESH_NAMESPACE } from '../../contract/names.js';
import { DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { KubeError, type Kube } from '../kube.js';
import type { CheckLine, CheckStatus } from './report.js';

export interface CheckOptions {
  now?: () => Date;
  /** A CA certificate closer than this to its end fails (default 30). */
  caExpiryDays?: number;
  /** Read each meshed pod's proxy metrics for its certificate (default true). */
  proxyMetrics?: boolean;
  /** Per request (default 5 s). */
  timeoutMs?: number;
  /** Parallel requests to proxies (default 8). */
  concurrency?: number;
}

export const DEFAULT_CA_EXPIRY_DAYS = 30;

export const NS = MESH_NAMESPACE;
export const DAY_MS = 86_400_000;
export const LOGS = `kubectl -n ${NS} logs deployment/${CONTROL_PLANE_NAME}`;

export class CheckContext {
  readonly lines: CheckLine[] = [];
  /** The section the next lines go under. */
  section = '';
  readonly now: () => Date;
  readonly caExpiryMs: number;
  readonly timeoutMs: number;
  /** The control plane's trust domain (its --trust-domain), once its Deployment is read. */
  trustDomain = DEFAULT_TRUST_DOMAIN;
  /** The lifetime of proxy certificates: the control plane's --cert-ttl, then tsmesh-config's certificateTtl. */
  certTtlMs = 3_600_000;
  /** Fingerprints of the roots in Secret tsmesh-ca, once read. */
  roots: Set<string> | undefined;

  constructor(
    readonly kube: Kube,
    readonly opts: CheckOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.caExpiryMs = (opts.caExpiryDays ?? DEFAULT_CA_EXPIRY_DAYS) * DAY_MS;
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  private add(status: CheckStatus, message: string, fix?: string): void {
    this.lines.push({ section: this.section, status, message, ...(fix !== undefined && status !== 'ok' ? { fix } : {}) });
  }
  ok(message: string): void {
    this.add('ok', message);
  }
  warn(message: string, fix: string): void {
    this.add('warn', message, fix);
  }
  fail(message: string, fix: string): void {
    this.add('fail', message, fix);
  }

  async get<T>(path: string, query?: Record<string, string>): Promise<T | undefined> {
    return this.kube.get<T>(path, query);
  }
}

export function errorText(e: unknown): string {
  return e instanceof KubeError ? `${e.status}${e.reason ? ` ${e.reason}` : ''}: ${e.apiMessage}` : (e as Error).message;
}

export const forbidden = (e: unknown): boolean => e instanceof KubeError && e.status === 403;

/** A duration for a person: 45s, 12m, 5h33m, 3d. */
export function human(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 2 * 86_400) return `${Math.floor(s / 86_400)}d`;
  if (s >= 2 * 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  if (s >= 120) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}
