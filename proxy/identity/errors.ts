// The identity client's errors, with stable codes for logs and tests. A
// refusal by the CA keeps the CA's own code (ca/errors.ts) in `caCode`.

export type IdentityErrorCode =
  /** TSMESH_CONTROL_PLANE_ADDRESS is not host:port. */
  | 'bad-address'
  /** The projected token file is missing or empty. */
  | 'token-unreadable'
  /** Neither the trust bundle file nor an earlier CA response gave a root to verify the CA with. */
  | 'trust-bundle-unreadable'
  /** No TLS connection to the CA: refused, reset, DNS, or its certificate did not verify. */
  | 'ca-unreachable'
  /** The CA took longer than the request timeout. */
  | 'ca-timeout'
  /** The CA answered with an error status. */
  | 'ca-refused'
  /** The CA answered 200 with something that is not a usable certificate for our key. */
  | 'bad-response';

export interface IdentityErrorDetails {
  /** HTTP status, when the CA answered. */
  status?: number;
  /** The CA's error code ({"error": {"code"}}), when it sent one. */
  caCode?: string;
  /** The CA's Retry-After, in milliseconds. */
  retryAfterMs?: number;
}

export class IdentityError extends Error {
  override name = 'IdentityError';
  constructor(
    readonly code: IdentityErrorCode,
    message: string,
    readonly details: IdentityErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /**
   * Whether the failure is expected to pass on its own (CA restarting, token
   * not yet valid, rate limit). Others point at a misconfiguration; they are
   * retried all the same, but logged as errors.
   */
  get transient(): boolean {
    if (this.code === 'ca-unreachable' || this.code === 'ca-timeout') return true;
    if (this.code !== 'ca-refused') return false;
    return [401, 429, 502, 503, 504].includes(this.details.status ?? 0);
  }
}
