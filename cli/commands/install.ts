// tsmesh install: print (--dry-run) or apply the manifests of manifests/,
// with Secret tsmesh-ca. Logic in install/.
import { MESH_NAMESPACE, INJECT_ENABLED, INJECT_LABEL } from '../../contract/names.js';
import { parseDuration } from '../../lib/duration.js';
import { applyInstall, readCaSecret, waitForControlPlane } from '../../install/apply.js';
import { generateCa, readCaDir, type CaMaterial } from '../../install/ca.js';
import { Kube, loadKubeConfig } from '../../install/kube.js';
import { DEFAULT_IMAGE, FAILURE_POLICIES, renderInstall, type FailurePolicy, type RenderOptions } from '../../install/render.js';
import { KUBE_FLAGS, OUTPUT_FLAG, outputFormat, parseFlags, UsageError, type Command } from '../command.js';
import { DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';

const USAGE = `Usage: tsmesh install [--dry-run [-o yaml|json]] [options]

Installs tsmesh into the cluster of the current kubeconfig context: namespace
${MESH_NAMESPACE}, the CRDs, RBAC, the control plane (two replicas), the
sidecar injector's MutatingWebhookConfiguration, ConfigMap tsmesh-config and
Secret tsmesh-ca (the mesh CA). Objects are applied server-side (field manager
tsmesh-install), so running it again upgrades in place. An existing CA is kept.

  --dry-run                 print the manifests instead of applying them; no cluster needed
  -o, --output FORMAT       with --dry-run: yaml (default: the files of manifests/, comments kept)
                            or json (a v1 List of the objects)
  --image IMAGE             the tsmesh image of the control plane and the injected containers
                            (default ${DEFAULT_IMAGE})
  --trust-domain TD         the mesh's trust domain (default cluster.local)
  --cert-ttl DURATION       workload certificate lifetime, 1m to 30d (default 1h)
  --failure-policy POLICY   Fail (default: a pod of a meshed namespace never starts without its
                            proxy) or Ignore (pods start unmeshed while the injector is down)
  --ca-dir DIR              bring the CA: root-cert.pem with root-key.pem, or with ca-cert.pem,
                            ca-key.pem and cert-chain.pem (default: a new root, made once)
  --kubeconfig FILE         default $KUBECONFIG, then ~/.kube/config
  --context NAME            a kubeconfig context other than the current one
  --wait DURATION           then wait until the control plane is available (for example 3m)`;

export const installCommand: Command = {
  name: 'install',
  summary: 'print or apply the manifests of the mesh (control plane, webhook, CRDs, CA)',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      'dry-run': { type: 'boolean' },
      image: { type: 'string' },
      'trust-domain': { type: 'string' },
      'cert-ttl': { type: 'string' },
      'failure-policy': { type: 'string' },
      'ca-dir': { type: 'string' },
      ...KUBE_FLAGS,
      ...OUTPUT_FLAG,
      wait: { type: 'string' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const failurePolicy = values['failure-policy'];
    if (failurePolicy !== undefined && !(FAILURE_POLICIES as readonly string[]).includes(failurePolicy))
      throw new UsageError(`--failure-policy ${JSON.stringify(failurePolicy)} is not one of ${FAILURE_POLICIES.join(', ')}`);
    const options: RenderOptions = {
      image: values.image,
      trustDomain: values['trust-domain'],
      certTtl: values['cert-ttl'],
      failurePolicy: failurePolicy as FailurePolicy | undefined,
    };
    // Settings are checked before anything is generated or sent.
    renderInstall(options);
    const trustDomain = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
    const waitMs = values.wait === undefined ? undefined : parseDuration(values.wait, '--wait');
    const output = outputFormat(values.output, ['yaml', 'json']);
    if (values.output !== undefined && !values['dry-run']) throw new UsageError('-o/--output prints the manifests: use it with --dry-run');

    if (values['dry-run']) {
      if (values.wait !== undefined) throw new UsageError('--wait needs a cluster; leave it out with --dry-run');
      const ca = values['ca-dir'] ? await readCaDir(values['ca-dir'], trustDomain) : await generateCa(trustDomain);
      const rendered = renderInstall({ ...options, ca });
      process.stdout.write(output === 'json' ? `${JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rendered.objects.map((o) => o.object) }, null, 2)}\n` : rendered.text);
      return 0;
    }

    const kube = new Kube(loadKubeConfig(values.kubeconfig, values.context));
    const print = (line: string): void => console.log(line);
    let ca: CaMaterial | undefined;
    if (values['ca-dir']) ca = await readCaDir(values['ca-dir'], trustDomain);
    else if (!(await readCaSecret(kube))) ca = await generateCa(trustDomain);
    console.log(`Installing tsmesh into ${kube.server}`);
    await applyInstall(kube, renderInstall({ ...options, ...(ca ? { ca } : {}) }), ca, print);
    if (waitMs !== undefined) await waitForControlPlane(kube, waitMs, print);
    console.log(
      [
        '',
        'tsmesh is installed. Next:',
        '  tsmesh check                                          is the mesh healthy?',
        `  kubectl label namespace NAME ${INJECT_LABEL}=${INJECT_ENABLED}   mesh the new pods of a namespace`,
      ].join('\n'),
    );
    return 0;
  },
};
