// tsmesh proxy-config <pod>: the config one proxy runs, as the control plane
// sent it and the proxy acknowledged it. Logic in control/proxies.ts.
import { fetchAdminJson } from '../../control/admin-client.js';
import { NOT_SERVED, PROXY_CONFIG_PATH, summarizeProxyConfig, type ProxyConfigAnswer } from '../../control/proxies.js';
import { ADMIN_ADDRESS_FLAG, ADMIN_ADDRESS_USAGE, adminAddress, OUTPUT_FLAG, outputFormat, parseFlags, UsageError, type Command } from '../command.js';
import { printStructured } from '../output.js';

const USAGE = `Usage: tsmesh proxy-config POD [-o summary|json|yaml] [--admin-address HOST:PORT]

Shows the config in force in one proxy: the ProxyConfig the control plane
sent it and it acknowledged, its version and when it was acknowledged. By
default a summary: the proxy's mTLS mode, inbound policy, and each service
with its ports, endpoints and routes; -o json or yaml gives the whole config.
POD is the pod's name, its address, its SPIFFE ID, namespace/ServiceAccount,
or its ServiceAccount alone (in local mode, tsmesh demo, the workload's name).
Read from the control plane's admin port (/api/v1/proxies/config); in a
cluster, port-forward it first:
  kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014
Each control-plane replica knows only the proxies connected to it: with
several replicas, ask the one the proxy streams from.

  -o, --output FORMAT        summary (default), json or yaml: {proxy, config}
${ADMIN_ADDRESS_USAGE}`;

export const proxyConfigCommand: Command = {
  name: 'proxy-config',
  summary: 'the config in force in one proxy',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { ...OUTPUT_FLAG, ...ADMIN_ADDRESS_FLAG }, true);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the proxy: its pod name, address or identity' : `one proxy at a time; got ${positionals.join(' ')}`);
    const output = outputFormat(values.output, ['summary', 'json', 'yaml']);
    const answer = await fetchAdminJson<ProxyConfigAnswer>(adminAddress(values['admin-address']), `${PROXY_CONFIG_PATH}?proxy=${encodeURIComponent(positionals[0]!)}`, NOT_SERVED);
    if (output === 'summary') console.log(summarizeProxyConfig(answer));
    else printStructured(answer, output);
    return 0;
  },
};
