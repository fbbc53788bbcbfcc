// tsmesh proxy-status: every proxy on the control plane's discovery stream,
// and whether it runs the config last sent to it. Logic in control/proxies.ts.
import { alignColumns } from '../../control/observe/stat.js';
import { fetchAdminJson } from '../../control/admin-client.js';
import { formatProxyStatusTable, NOT_SERVED, PROXIES_PATH, type ProxyStatusList } from '../../control/proxies.js';
import { ADMIN_ADDRESS_FLAG, ADMIN_ADDRESS_USAGE, adminAddress, OUTPUT_FLAG, outputFormat, parseFlags, type Command } from '../command.js';
import { printStructured } from '../output.js';

const USAGE = `Usage: tsmesh proxy-status [-o table|json|yaml] [--admin-address HOST:PORT]

Lists every proxy connected to the control plane's discovery stream: its pod
(the workload in local mode), identity (namespace/ServiceAccount), address,
SYNC (SYNCED: it acknowledged the config last sent to it; STALE: an older
one; NOT ACKED: none yet; NOT SENT: there was none to send), the versions
sent and acknowledged, when it acknowledged, when the certificate it last
presented expires, and when it last spoke to the control plane.
Read from the control plane's admin port (/api/v1/proxies); in a cluster,
port-forward it first:
  kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014
Each control-plane replica knows only the proxies connected to it: with
several replicas, ask each one (port-forward to each pod in turn).

  -o, --output FORMAT        table (default), json or yaml (times in ISO 8601)
${ADMIN_ADDRESS_USAGE}`;

export const proxyStatusCommand: Command = {
  name: 'proxy-status',
  summary: 'the proxies on the discovery stream, and their config sync',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { ...OUTPUT_FLAG, ...ADMIN_ADDRESS_FLAG });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const output = outputFormat(values.output, ['table', 'json', 'yaml']);
    const list = await fetchAdminJson<ProxyStatusList>(adminAddress(values['admin-address']), PROXIES_PATH, NOT_SERVED);
    if (output !== 'table') {
      printStructured(list, output);
      return 0;
    }
    if (list.proxies.length === 0) console.log('no proxy is connected to this control plane');
    else console.log(alignColumns(formatProxyStatusTable(list)));
    console.log(`(${list.note})`);
    return 0;
  },
};
