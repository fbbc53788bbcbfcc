// Packaging and install: what `tsmesh install`, `uninstall` and `check` do,
// apart from their flags.
export { DEFAULT_IMAGE, FAILURE_POLICIES, findManifestsDir, kustomizationResources, readManifestFiles, renderInstall, type FailurePolicy, type RenderOptions, type Rendered } from './render.js';
export { caFilesFromSecret, caSecret, generateCa, readCaDir, type CaFiles, type CaMaterial } from './ca.js';
export { CA_SECRET_NAME } from '../contract/names.js';
export { applyInstall, ensureCaSecret, readCaSecret, rolloutPending, uninstall, waitForControlPlane } from './apply.js';
export { checksFailed, formatChecks, runChecks, type CheckLine, type CheckOptions, type CheckStatus } from './check.js';
export { INSTALL_FIELD_MANAGER, Kube, KubeError, loadKubeConfig, type KubeObject } from './kube.js';
