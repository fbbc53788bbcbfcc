// tsmesh inject: mesh the workloads of YAML manifests by hand, like
// `linkerd inject --manual` or `istioctl kube-inject`. The patch is the one
// the webhook would send; the output goes to kubectl apply.
import { readFile } from 'node:fs/promises';
import { isatty } from 'node:tty';
import { INJECTABLE_KINDS, injectManifests, manifestsAsJson } from '../../webhook/manifests.js';
import { meshConfig, parseMeshConfigText, type MeshConfigInput } from '../../webhook/mesh-config.js';
import { flagOrEnv, OUTPUT_FLAG, outputFormat, parseFlags, UsageError, type Command } from '../command.js';

const USAGE = `Usage: tsmesh inject [flags] [FILE...]   (or -f FILE, as kubectl takes it)

Reads Kubernetes YAML (files, or stdin when no FILE or FILE is -), adds the tsmesh
init container, proxy and volumes to every pod template, and writes the result to
stdout:  tsmesh inject -f deploy.yaml | kubectl apply -f -
Injects ${INJECTABLE_KINDS.join(', ')} (and the items of a List); other
documents pass through. Pods opted out (tsmesh.io/inject: disabled), already injected,
on hostNetwork or with another mesh's sidecar are left as they are, with a note on stderr.

  -f, --filename FILE         a manifest to inject, - for stdin; may be repeated (as FILE...)
  -n, --namespace NS          namespace of objects that name none (default "default")
  -o, --output FORMAT         yaml (default: the documents as written, comments kept) or json
                              (one object, or a v1 List of several)
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

/**
 * Reads all of stdin as a stream. Not readFileSync(0): once Node holds
 * stdin as a stream (a pipe, a FIFO) its descriptor is non-blocking, and a
 * synchronous read before the writer has written fails with EAGAIN, as it did
 * behind `(sleep 1; cat deploy.yaml) | tsmesh inject -`.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function readInput(file: string): Promise<string> {
  try {
    return file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot read ${file === '-' ? 'stdin' : file} (${err.code ?? err.message}); give a YAML file, or - for stdin`, { cause: e });
  }
}

export const injectCommand: Command = {
  name: 'inject',
  summary: 'add the tsmesh sidecar to the workloads of YAML manifests',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        filename: { type: 'string', short: 'f', multiple: true },
        namespace: { type: 'string', short: 'n' },
        ...OUTPUT_FLAG,
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
    const output = outputFormat(values.output, ['yaml', 'json']);
    const given = [...(values.filename ?? []), ...positionals];
    if (given.includes('')) throw new UsageError('-f needs a file name (or - for stdin)');
    const files = given.length > 0 ? given : ['-'];
    const stdinReaders = [...files, ...(values.config === undefined ? [] : [values.config])].filter((f) => f === '-').length;
    if (stdinReaders > 1) throw new UsageError('stdin (-) can be read once: give it as one input only');
    // isatty(0), not process.stdin.isTTY: that would make stdin a stream before it is read.
    if (stdinReaders > 0 && isatty(0)) throw new UsageError('no input: give a YAML file (-f FILE), or pipe YAML to stdin');

    const fromFile = values.config ? parseMeshConfigText(await readInput(values.config), values.config) : {};
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
      const injected = injectManifests(await readInput(file), mesh, { source, ...(values.namespace ? { namespace: values.namespace } : {}) });
      if (injected.output !== '') outputs.push(injected.output);
      for (const r of injected.reports) process.stderr.write(`${r.resource} ${r.outcome}${r.message ? `: ${r.message}` : ''}\n`);
    }
    const yaml = outputs.join('---\n');
    process.stdout.write(output === 'json' ? `${JSON.stringify(manifestsAsJson(yaml), null, 2)}\n` : yaml);
    return 0;
  },
};

function withoutUndefined(o: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, string] => e[1] !== undefined));
}
