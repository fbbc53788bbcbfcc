// The CA's errors, with stable codes. The HTTP status of each lives here too,
// so the server maps errors in one place and metrics count them by code.

export const CA_ERROR_STATUS = {
  'bad-request': 400,
  'malformed-csr': 400,
  'csr-signature': 400,
  'weak-key': 400,
  'san-not-allowed': 400,
  'bad-ttl': 400,
  unauthenticated: 401,
  'identity-mismatch': 403,
  'not-a-workload': 403,
  'too-large': 413,
  'issuer-not-valid': 503,
  'authenticator-unavailable': 503,
  internal: 500,
} as const;

export type CaErrorCode = keyof typeof CA_ERROR_STATUS;

export class CaError extends Error {
  override name = 'CaError';
  constructor(
    readonly code: CaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get status(): number {
    return CA_ERROR_STATUS[this.code];
  }
}
