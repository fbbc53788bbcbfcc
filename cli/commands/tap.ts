// tsmesh tap: the live requests of a workload, namespace or pod, read from
// the control plane's tap stream. Logic in control/tap-client.ts.
import { streamTap, TapFormatter } from '../../control/tap-client.js';
import { loadKubeConfig } from '../../install/kube.js';
import { ADMIN_ADDRESS_FLAG, ADMIN_ADDRESS_USAGE, adminAddress, KUBE_FLAGS, OUTPUT_FLAG, outputFormat, parseFlags, UsageError, type Command } from '../command.js';
import { TAP_CLUSTER_ROLE } from '../../contract/names.js';

const USAGE = `Usage: tsmesh tap TARGET [-n NAMESPACE] [filters] [-o text|json] [--admin-address HOST:PORT]

Streams the requests of TARGET live, as its sidecars see them, until ^C:
one line per request head (req), response head (rsp) and end, with method,
authority, path, status, latency, duration and response size. Header names
are shown with their values <redacted>; --show-headers shows the values.

TARGET: ns/NAMESPACE, workload/SERVICEACCOUNT, deploy/NAME (the workload of
the ServiceAccount of that name), or pod/NAME.

Read from the control plane's admin port (/api/v1/tap); in a cluster,
port-forward it first:
  kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014
In a cluster the control plane asks Kubernetes RBAC: the caller needs verb
watch on tap.tsmesh.io/tap in the namespace (ClusterRole ${TAP_CLUSTER_ROLE};
--show-headers also needs watch on tap/headers). tsmesh tap sends the
kubeconfig's bearer token, or --token; a kubeconfig with a client certificate
only (kind) has none: use a ServiceAccount's token (kubectl create token SA).
A local mesh (tsmesh demo) has no API server and asks nothing.

  -n, --namespace N          the target's namespace (default "default"; not for ns/)
  --path PREFIX              only requests whose path starts with PREFIX
  --method M                 only requests of method M
  --status CODE|Nxx          only responses with this status or class (500, 5xx)
  --identity SPIFFE-ID       only requests with this caller or callee
  --direction in|out         inbound or outbound requests only
  --max-rps N                events a second each proxy sends at most (default 100); more are dropped and counted
  --show-headers             header values too
  -o, --output FORMAT        text (default) or json (one JSON object per event)
${ADMIN_ADDRESS_USAGE}
  --token TOKEN              the bearer token to send (default the kubeconfig's, if any)
  --kubeconfig FILE, --context NAME   where the token comes from`;

export const tapCommand: Command = {
  name: 'tap',
  summary: 'live requests of a workload, namespace or pod',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        namespace: { type: 'string', short: 'n' },
        path: { type: 'string' },
        method: { type: 'string' },
        status: { type: 'string' },
        identity: { type: 'string' },
        direction: { type: 'string' },
        'max-rps': { type: 'string' },
        'show-headers': { type: 'boolean' },
        ...ADMIN_ADDRESS_FLAG,
        token: { type: 'string' },
        ...OUTPUT_FLAG,
        ...KUBE_FLAGS,
      },
      true,
    );
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`tsmesh tap takes one TARGET (ns/NAMESPACE, workload/NAME, deploy/NAME or pod/NAME), got ${positionals.length}`);
    const output = outputFormat(values.output, ['text', 'json']);
    const address = adminAddress(values['admin-address']);
    const query = new URLSearchParams({ target: positionals[0]! });
    const direction = values.direction === 'in' ? 'inbound' : values.direction === 'out' ? 'outbound' : values.direction;
    const params: [string, string | undefined][] = [
      ['namespace', values.namespace],
      ['path', values.path],
      ['method', values.method],
      ['status', values.status],
      ['identity', values.identity],
      ['direction', direction],
      ['maxRps', values['max-rps']],
      ['showHeaders', values['show-headers'] ? 'true' : undefined],
    ];
    for (const [k, v] of params) if (v !== undefined) query.set(k, v);
    const token = values.token ?? kubeconfigToken(values.kubeconfig, values.context);
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort());
    const formatter = new TapFormatter();
    await streamTap(address, query, token, (e) => process.stdout.write(`${output === 'json' ? JSON.stringify(e) : formatter.line(e)}\n`), abort.signal);
    return 0;
  },
};

/** The bearer token of the kubeconfig's current user, if it has one (a client certificate has none). */
function kubeconfigToken(file: string | undefined, context: string | undefined): string | undefined {
  try {
    return loadKubeConfig(file, context).getCurrentUser()?.token || undefined;
  } catch (e) {
    // Without a kubeconfig there is no token to send; a local mesh needs none. One that was named must load.
    if (file !== undefined || context !== undefined) throw new UsageError((e as Error).message);
    return undefined;
  }
}
