// The AdmissionReview v1 format, read and written here and nowhere else: the
// API server's request in, our decision out as the review it expects back.

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource?: { readonly group: string; readonly version: string; readonly resource: string };
  readonly subResource?: string;
  readonly name?: string;
  readonly namespace?: string;
  /** CREATE, UPDATE, DELETE or CONNECT. */
  readonly operation: string;
  readonly object: unknown;
  readonly dryRun: boolean;
}

/** A review the API server would never send: answered with HTTP 400 and this message. */
export class BadReviewError extends Error {
  override name = 'BadReviewError';
}

export type AdmissionDecision =
  | { readonly allowed: true; readonly patch?: readonly unknown[]; readonly warnings?: readonly string[] }
  | { readonly allowed: false; readonly code: number; readonly message: string; readonly warnings?: readonly string[] };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(message: string): never {
  throw new BadReviewError(message);
}

/** Reads an AdmissionReview v1 body (already JSON-parsed); throws BadReviewError saying what is wrong with it. */
export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObject(body)) bad(`expected an AdmissionReview JSON object, got ${Array.isArray(body) ? 'an array' : typeof body}`);
  if (body['apiVersion'] !== ADMISSION_API_VERSION) {
    bad(`apiVersion ${JSON.stringify(body['apiVersion'])} is not supported; send ${ADMISSION_API_VERSION} (admissionReviewVersions: [v1])`);
  }
  if (body['kind'] !== 'AdmissionReview') bad(`kind ${JSON.stringify(body['kind'])} is not AdmissionReview`);
  const request = body['request'];
  if (!isObject(request)) bad('the review has no "request" object');
  const { uid, kind, operation, resource, subResource, name, namespace, object, dryRun } = request;
  if (typeof uid !== 'string' || uid === '') bad('request.uid is missing; the response must echo it');
  if (!isObject(kind) || typeof kind['kind'] !== 'string' || typeof kind['version'] !== 'string')
    bad('request.kind must be an object with group, version and kind');
  if (typeof operation !== 'string' || operation === '') bad('request.operation is missing');
  const optionalString = (field: string, v: unknown): string | undefined => {
    if (v === undefined || v === null || v === '') return undefined;
    return typeof v === 'string' ? v : bad(`request.${field} must be a string`);
  };
  const sub = optionalString('subResource', subResource);
  const podName = optionalString('name', name);
  const ns = optionalString('namespace', namespace);
  return {
    uid,
    kind: { group: typeof kind['group'] === 'string' ? kind['group'] : '', version: kind['version'], kind: kind['kind'] },
    ...(isObject(resource)
      ? { resource: { group: String(resource['group'] ?? ''), version: String(resource['version'] ?? ''), resource: String(resource['resource'] ?? '') } }
      : {}),
    ...(sub === undefined ? {} : { subResource: sub }),
    ...(podName === undefined ? {} : { name: podName }),
    ...(ns === undefined ? {} : { namespace: ns }),
    operation,
    object,
    dryRun: dryRun === true,
  };
}

/** The AdmissionReview the API server expects back: JSONPatch base64-encoded, warnings as given. */
export function admissionResponse(uid: string, decision: AdmissionDecision): Record<string, unknown> {
  const warnings = decision.warnings && decision.warnings.length > 0 ? { warnings: decision.warnings } : {};
  const response = decision.allowed
    ? {
        uid,
        allowed: true,
        ...(decision.patch && decision.patch.length > 0
          ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64') }
          : {}),
        ...warnings,
      }
    : { uid, allowed: false, status: { code: decision.code, message: decision.message }, ...warnings };
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

/** The review the API server sends for a pod's CREATE: what `tsmesh check` and the benchmarks ask the injector. */
export function podCreateReview(
  pod: unknown,
  options: { readonly uid: string; readonly namespace: string; readonly dryRun?: boolean; readonly username?: string },
): Record<string, unknown> {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    request: {
      uid: options.uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace: options.namespace,
      dryRun: options.dryRun ?? false,
      userInfo: { username: options.username ?? 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
    },
  };
}

/** What an admission webhook answered, as the API server reads it: the decision, the JSONPatch decoded, the refusal's message. */
export interface AdmissionAnswer {
  readonly uid?: string;
  readonly allowed: boolean;
  readonly patch?: unknown;
  readonly message?: string;
  readonly warnings: readonly string[];
}

/** Reads the AdmissionReview a webhook answered; throws BadReviewError saying what is wrong with it. */
export function readAdmissionAnswer(body: unknown): AdmissionAnswer {
  if (!isObject(body) || body['kind'] !== 'AdmissionReview') bad(`expected an AdmissionReview, got ${JSON.stringify(body)?.slice(0, 200)}`);
  const response = body['response'];
  if (!isObject(response)) bad('the review has no "response" object');
  const status = isObject(response['status']) ? response['status'] : {};
  let patch: unknown;
  if (typeof response['patch'] === 'string') {
    try {
      patch = JSON.parse(Buffer.from(response['patch'], 'base64').toString('utf8'));
    } catch {
      bad('response.patch is not base64-encoded JSON');
    }
  }
  return {
    ...(typeof response['uid'] === 'string' ? { uid: response['uid'] } : {}),
    allowed: response['allowed'] === true,
    ...(patch === undefined ? {} : { patch }),
    ...(typeof status['message'] === 'string' ? { message: status['message'] } : {}),
    warnings: Array.isArray(response['warnings']) ? response['warnings'].filter((w): w is string => typeof w === 'string') : [],
  };
}
