// tsmesh stat: golden metrics per workload, read from the control plane's
// dashboard JSON. Logic in control/observe/stat.ts.
import { fetchMeshViewWithRates, formatStatTable } from '../../control/observe/stat.js';
import { ADMIN_ADDRESS_FLAG, ADMIN_ADDRESS_USAGE, adminAddress, OUTPUT_FLAG, outputFormat, parseFlags, type Command } from '../command.js';
import { printStructured } from '../output.js';

const USAGE = `Usage: tsmesh stat [-n NAMESPACE] [-o table|json|yaml] [--admin-address HOST:PORT]

Prints golden metrics per workload, as its meshed pods answered them over
the last seconds: success rate (non-5xx), requests per second, latency
p50/p95/p99, and MESHED (proxies that answered the control plane's scrape
/ proxies known). Read from the control plane's admin port (/api/v1/mesh);
in a cluster, port-forward it first:
  kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014

  -n, --namespace N          only workloads of namespace N (default: every namespace)
  -o, --output FORMAT        table (default), json or yaml: a list of the workloads, the
                             same numbers unformatted (rates per second, latencies in ms)
${ADMIN_ADDRESS_USAGE}`;

export const statCommand: Command = {
  name: 'stat',
  summary: 'golden metrics per workload',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { namespace: { type: 'string', short: 'n' }, ...OUTPUT_FLAG, ...ADMIN_ADDRESS_FLAG });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const output = outputFormat(values.output, ['table', 'json', 'yaml']);
    const address = adminAddress(values['admin-address']);
    const view = await fetchMeshViewWithRates(address);
    const namespace = values.namespace;
    if (namespace !== undefined && !view.workloads.some((w) => w.namespace === namespace)) {
      const known = [...new Set(view.workloads.map((w) => w.namespace))].sort();
      console.error(`tsmesh stat: no meshed workload in namespace ${JSON.stringify(namespace)}; namespaces with one: ${known.join(', ') || 'none'}`);
      return 1;
    }
    if (output !== 'table') {
      const workloads = view.workloads.filter((w) => namespace === undefined || w.namespace === namespace);
      printStructured(workloads, output);
      return 0;
    }
    console.log(formatStatTable(view, namespace));
    if (view.windowSeconds === 0 && view.proxies.length > 0) console.log('(no rates yet: the control plane has scraped each proxy once at most; run again in a few seconds)');
    return 0;
  },
};
