// Identity: SPIFFE IDs, the CA, CSRs, authenticators and the CA's HTTP API.
export * from '../contract/spiffe.js';
export { CaError, CA_ERROR_STATUS, type CaErrorCode } from './errors.js';
export {
  CertificateAuthority,
  DEFAULT_TTL_SECONDS,
  MIN_TTL_SECONDS,
  MAX_TTL_SECONDS,
  CLOCK_SKEW_BACKDATE_SECONDS,
  checkTtlSeconds,
  type CaOptions,
  type IssueRequest,
  type IssuedCertificate,
} from './authority.js';
export { splitPemCertificates } from './der.js';
export { buildCsrPem, parseCsrPem, type ParsedCsr } from './csr.js';
export { TrustBundle } from './trust-bundle.js';
export { createRootCa, createIntermediateCa, type CaKeyPair } from './root.js';
export { CA_FILES, loadCaFromDir, writeRootCa } from './material.js';
export { type Authenticator, type Caller } from './authn/authenticator.js';
export { CA_TOKEN_AUDIENCE } from '../contract/names.js';
export { KubernetesAuthenticator, apiServerTokenReviewer, type TokenReviewer } from './authn/kubernetes.js';
export { TokenFileAuthenticator, type StaticToken } from './authn/token-file.js';
export { caRouter, MAX_CERTIFICATE_REQUEST_BYTES, type CertificateResponse } from './server.js';
export { createCaMetrics, type CaMetrics } from './metrics.js';
