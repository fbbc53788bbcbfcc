// How the CA learns who is asking. The identity a certificate carries comes
// only from an Authenticator's result, never from the CSR.

export interface Caller {
  spiffeId: string;
  namespace?: string;
  serviceAccount?: string;
}

export interface Authenticator {
  /** Short name for logs and metrics: "kubernetes", "token-file". */
  readonly kind: string;
  /** Resolves the caller of `token`, or rejects with a CaError (unauthenticated, not-a-workload, authenticator-unavailable). */
  authenticate(token: string): Promise<Caller>;
}

/** The audience workload tokens must be minted for (projected ServiceAccount token). */
