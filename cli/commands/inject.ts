// tsmesh inject: mesh the workloads of YAML manifests by hand, like
// `linkerd inject --manual` or `istioctl kube-inject`. The patch is the one
// the webhook would send; the output goes to kubectl apply.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { MeshConfigError } from '../../webhook/errors.js';
import { INJECTABLE_KINDS, injectManifests } from '../../webhook/manifests.js';
import { meshConfig, parseMeshConfigInput, type MeshConfigInput } from '../../webhook/mesh-config.js';
import { flagOrEnv, parseFlags, UsageError, type Command } from '../command.js';

const USAGE = `Usage: tsmesh inject [flags] [FILE...]

Reads Kubernetes YAML (files, or stdin when no FILE or FILE is -), adds the tsmesh
init container, proxy and volumes to every pod template, and writes the result to
stdout:  tsmesh inject deploy.yaml | kubectl apply -f -
Injects ${INJECTABLE_KINDS.join(', ')} (and the items of a List); other
documents pass through. Pods opted out (tsmesh.io/inject: disabled), already injected,
on hostNetwork or with another mesh's sidecar are left as they are, with a note on stderr.

  --namespace NS              namespace of objects that name none (default "default")
  --config FILE               mesh config (YAML): trustDomain, controlPlaneAddress, image,
                              imagePullPolicy, logLevel, proxyResources{cpuRequest, memoryRequest,
                              memoryLimit, cpuLimit}; flags override it
  --image IMAGE               tsmesh image for both containers (default ghcr.io/tsmesh/tsmesh:<version>)  [TSMESH_IMAGE]
  --image-pull-policy POLICY  Always, IfNotPresent, Never (default IfNotPresent)
  --trust-domain TD           (default cluster.local)                                      [TSMESH_TRUST_DOMAIN]
  --control-plane-address A   host:port of the control plane (default tsmesh-control-plane.tsmesh-system.svc:15012)
  --proxy-log-level LEVEL     error, warn, info, debug (default info)
  --proxy-cpu-request Q       default proxy CPU request (default 100m)
  --proxy-memory-request Q    default proxy memory request (default 64Mi)
  --proxy-memory-limit Q      default proxy memory limit (default 256Mi)
  --proxy-cpu-limit Q         proxy CPU limit (default none)
Per-pod annotations (tsmesh.io/proxy-cpu-request, ...) win over these defaults.`;

function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot read ${file === '-' ? 'stdin' : file} (${err.code ?? err.message}); give a YAML file, or - for stdin`, { cause: e });
  }
}

function loadConfigFile(path: string): MeshConfigInput {
  const text = readInput(path);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new MeshConfigError(`${path}: not valid YAML: ${(e as Error).message}`);
  }
  return parseMeshConfigInput(doc, path);
}

export const injectCommand: Command = {
  name: 'inject',
  summary: 'add the tsmesh sidecar to the workloads of YAML manifests',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        namespace: { type: 'string' },
        config: { type: 'string' },
        image: { type: 'string' },
        'image-pull-policy': { type: 'string' },
        'trust-domain': { type: 'string' },
        'control-plane-address': { type: 'string' },
        'proxy-log-level': { type: 'string' },
        'proxy-cpu-request': { type: 'string' },
        'proxy-memory-request': { type: 'string' },
        'proxy-memory-limit': { type: 'string' },
        'proxy-cpu-limit': { type: 'string' },
      },
      true,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const files = positionals.length > 0 ? positionals : ['-'];
    if (files.includes('-') && process.stdin.isTTY) throw new UsageError('no input: give a YAML file, or pipe YAML to stdin');

    const fromFile = values.config ? loadConfigFile(values.config) : {};
    // Flags over the config file over the defaults; an unset flag is undefined and keeps what is below it.
    const mesh = meshConfig({
      ...fromFile,
      ...withoutUndefined({
        image: flagOrEnv(values.image, 'TSMESH_IMAGE'),
        trustDomain: flagOrEnv(values['trust-domain'], 'TSMESH_TRUST_DOMAIN'),
        imagePullPolicy: values['image-pull-policy'],
        controlPlaneAddress: values['control-plane-address'],
        logLevel: values['proxy-log-level'],
      }),
      proxyResources: {
        ...fromFile.proxyResources,
        ...withoutUndefined({
          cpuRequest: values['proxy-cpu-request'],
          memoryRequest: values['proxy-memory-request'],
          memoryLimit: values['proxy-memory-limit'],
          cpuLimit: values['proxy-cpu-limit'],
        }),
      },
    } as MeshConfigInput);

    const outputs: string[] = [];
    for (const file of files) {
      const source = file === '-' ? 'stdin' : file;
      // A ManifestError names the file, document and resource; nothing is written when one document is refused.
      const { output, reports } = injectManifests(readInput(file), mesh, { source, ...(values.namespace ? { namespace: values.namespace } : {}) });
      if (output !== '') outputs.push(output);
      for (const r of reports) process.stderr.write(`${r.resource} ${r.outcome}${r.message ? `: ${r.message}` : ''}\n`);
    }
    process.stdout.write(outputs.join('---\n'));
    return 0;
  },
};

function withoutUndefined(o: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, string] => e[1] !== undefined));
}
