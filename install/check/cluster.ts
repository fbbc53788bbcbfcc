// Section Kubernetes: the API server answers, and runs a Kubernetes with
// native sidecars.
import { errorText, type CheckContext } from './context.js';

/** Kubernetes that runs native sidecars (restartPolicy Always init containers) by default. */
export const MIN_KUBERNETES_MINOR = 29;

/** False when the API server cannot be reached: nothing else can be checked. */
export async function checkKubernetes(ctx: CheckContext): Promise<boolean> {
  let version: { major?: string; minor?: string; gitVersion?: string } | undefined;
  try {
    version = (await ctx.kube.request('GET', '/version', { timeoutMs: ctx.timeoutMs })).body as typeof version;
  } catch (e) {
    ctx.fail(`cannot reach the API server ${ctx.kube.server}: ${errorText(e)}`, 'check KUBECONFIG, --kubeconfig or --context (kubectl cluster-info should answer)');
    return false;
  }
  const major = Number.parseInt(version?.major ?? '', 10);
  const minor = Number.parseInt(version?.minor ?? '', 10);
  const text = version?.gitVersion ?? `${version?.major}.${version?.minor}`;
  if (major === 1 && minor < MIN_KUBERNETES_MINOR)
    ctx.fail(`Kubernetes ${text} has no native sidecars (1.${MIN_KUBERNETES_MINOR} or later needed): the proxy would not start before the app`, `upgrade the cluster to 1.${MIN_KUBERNETES_MINOR} or later (kind: kind create cluster --config kind/kind-config.yaml)`);
  else ctx.ok(`API server ${ctx.kube.server} runs Kubernetes ${text}`);
  return true;
}
