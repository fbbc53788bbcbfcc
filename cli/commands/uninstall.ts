// tsmesh uninstall: remove what tsmesh install applied. Logic in install/.
import { uninstall } from '../../install/apply.js';
import { Kube, loadKubeConfig } from '../../install/kube.js';
import { renderInstall } from '../../install/render.js';
import { KUBE_FLAGS, parseFlags, type Command } from '../command.js';

const USAGE = `Usage: tsmesh uninstall [--dry-run] [--crds] [options]

Removes tsmesh from the cluster of the current kubeconfig context: the sidecar
injector's MutatingWebhookConfiguration first (so no pod creation waits on a
control plane that is going away), then the control plane, its RBAC, Secret
tsmesh-ca, the tsmesh-trust-bundle ConfigMaps it wrote, and namespace
tsmesh-system. Pods that already run a proxy keep it until they are restarted.

  --dry-run           ask the API server (dryRun=All) and delete nothing
  --crds              also delete the CRDs, and with them every TrafficPolicy and AuthorizationPolicy
  --kubeconfig FILE   default $KUBECONFIG, then ~/.kube/config
  --context NAME      a kubeconfig context other than the current one`;

export const uninstallCommand: Command = {
  name: 'uninstall',
  summary: 'remove the mesh from the cluster',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      'dry-run': { type: 'boolean' },
      crds: { type: 'boolean' },
      ...KUBE_FLAGS,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const kube = new Kube(loadKubeConfig(values.kubeconfig, values.context));
    console.log(`Removing tsmesh from ${kube.server}${values['dry-run'] ? ' (dry run: nothing is deleted)' : ''}`);
    await uninstall(kube, renderInstall(), (line) => console.log(line), { dryRun: values['dry-run'] ?? false, crds: values.crds ?? false });
    return 0;
  },
};
