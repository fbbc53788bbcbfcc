// The admission handler for pods: the review's pod through buildPodPatch, the
// result as an admission decision.
import { BadReviewError, type AdmissionRequest } from './admission.js';
import { InjectionRefused } from './errors.js';
import { TSMESH_VERSION, type MeshConfig } from './mesh-config.js';
import { buildPodPatch } from './patch.js';
import type { AdmissionHandler, AdmissionVerdict } from './server.js';

export interface PodInjectorOptions {
  readonly mesh: MeshConfig;
  /** Recorded in tsmesh.io/status; defaults to this package's version. */
  readonly version?: string;
}

function checkPodRequest(request: AdmissionRequest): void {
  const { group, version, kind } = request.kind;
  if (group !== '' || version !== 'v1' || kind !== 'Pod') {
    const got = `${group === '' ? '' : `${group}/`}${version} ${kind}`;
    throw new BadReviewError(`this webhook admits only v1 Pods, not ${got}; its rules must select resources [pods] in apiGroups [""]`);
  }
}

export function podInjector(opts: PodInjectorOptions): AdmissionHandler {
  return (request): AdmissionVerdict => {
    checkPodRequest(request);
    if (request.operation !== 'CREATE' || request.subResource !== undefined) {
      // Containers cannot be added to a running pod; only creation is meshed.
      return { result: 'skipped', reason: 'not-a-create', decision: { allowed: true } };
    }
    const object = request.object as { metadata?: { namespace?: unknown } } | undefined;
    const namespace = request.namespace ?? (typeof object?.metadata?.namespace === 'string' ? object.metadata.namespace : undefined);
    if (namespace === undefined) throw new BadReviewError('request.namespace is missing; a pod is always created in a namespace');
    try {
      const result = buildPodPatch(request.object, { name: namespace }, opts.mesh, opts.version ?? TSMESH_VERSION);
      if (result.kind === 'skipped') {
        const { reason, message } = result.skip;
        return { result: 'skipped', reason, decision: { allowed: true, warnings: [`tsmesh: pod not injected: ${message}`] } };
      }
      return { result: 'injected', decision: { allowed: true, patch: result.patch, warnings: result.warnings.map((w) => `tsmesh: ${w}`) } };
    } catch (e) {
      if (!(e instanceof InjectionRefused)) throw e;
      return { result: 'refused', reason: e.code, decision: { allowed: false, code: 400, message: `tsmesh: ${e.message}` } };
    }
  };
}
