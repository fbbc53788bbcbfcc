// Kubernetes ServiceAccount tokens, checked by the API server's TokenReview
// and bound to the audience tsmesh-ca.
import { AuthenticationV1Api, type KubeConfig, type V1TokenReviewStatus } from '@kubernetes/client-node';
import { CaError } from '../errors.js';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import { type Authenticator, type Caller } from './authenticator.js';
import { CA_TOKEN_AUDIENCE } from '../../contract/names.js';

/** Asks the API server about a token; the seam between the mapping logic and the network. */
export type TokenReviewer = (token: string, audiences: string[]) => Promise<V1TokenReviewStatus>;

export function apiServerTokenReviewer(kc: KubeConfig): TokenReviewer {
  const api = kc.makeApiClient(AuthenticationV1Api);
  return async (token, audiences) => {
    const review = await api.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
    });
    return review.status ?? {};
  };
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;

export class KubernetesAuthenticator implements Authenticator {
  readonly kind = 'kubernetes';

  constructor(
    private readonly trustDomain: string,
    private readonly review: TokenReviewer,
    private readonly audience = CA_TOKEN_AUDIENCE,
  ) {}

  async authenticate(token: string): Promise<Caller> {
    let status: V1TokenReviewStatus;
    try {
      status = await this.review(token, [this.audience]);
    } catch (e) {
      throw new CaError('authenticator-unavailable', `TokenReview failed: ${(e as Error).message}`, { cause: e });
    }
    if (!status.authenticated) {
      throw new CaError('unauthenticated', `the token was rejected by the API server: ${status.error ?? 'not authenticated'} (tokens must be minted for audience ${this.audience})`);
    }
    // An API server that ignores audiences answers with none; the token must have been bound to ours.
    if (!status.audiences?.includes(this.audience))
      throw new CaError('unauthenticated', `the token is not bound to audience ${this.audience}`);
    const username = status.user?.username ?? '';
    const m = SERVICE_ACCOUNT_USER.exec(username);
    if (!m) throw new CaError('not-a-workload', `${username || 'the caller'} is not a ServiceAccount; only workloads get certificates`);
    const namespace = m[1]!;
    const serviceAccount = m[3]!;
    return { spiffeId: workloadSpiffeId(this.trustDomain, namespace, serviceAccount), namespace, serviceAccount };
  }
}
