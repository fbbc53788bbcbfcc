// Admission: pod -> patch (pure, buildPodPatch), the AdmissionReview server,
// and the injection of manifests for `tsmesh inject`.
export { createWebhookApp, startWebhookServer, WEBHOOK_PATH, WEBHOOK_PORT, type RunningWebhook, type TlsMaterial, type WebhookAppOptions, type WebhookServerOptions } from './app.js';
export { buildPodPatch, pointerSegment, type InjectionStatus, type PatchOperation, type PatchResult } from './patch.js';
export { InjectionRefused, MeshConfigError, REFUSAL_CODES, type RefusalCode } from './errors.js';
export { defaultMeshConfig, meshConfig, TSMESH_VERSION, type MeshConfig, type MeshConfigInput, type ProxyResources } from './mesh-config.js';
export { SKIP_REASONS, type NamespaceInfo, type Skip, type SkipReason } from './skip.js';
export { createWebhookMetrics, ADMISSION_RESULTS, type AdmissionResult, type WebhookMetrics } from './metrics.js';
export { admissionRouter, MAX_REVIEW_BYTES, type AdmissionHandler, type AdmissionVerdict } from './server.js';
export { podInjector } from './injector.js';
export * from '../contract/names.js';
