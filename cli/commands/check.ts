// tsmesh check: is the mesh healthy? Logic in install/check/ (run.ts: the sections in order).
import { stringify } from 'yaml';
import { DEFAULT_CA_EXPIRY_DAYS } from '../../install/check/context.js';
import { checksFailed, formatChecks } from '../../install/check/report.js';
import { runChecks } from '../../install/check/run.js';
import { Kube, loadKubeConfig } from '../../install/kube.js';
import { KUBE_FLAGS, OUTPUT_FLAG, outputFormat, parseFlags, UsageError, type Command } from '../command.js';

const USAGE = `Usage: tsmesh check [options]

Checks the mesh through the Kubernetes API (no port-forward): the control
plane is ready and answers, the CA root and intermediate are valid (a
certificate within ${DEFAULT_CA_EXPIRY_DAYS} days of expiry fails), the injector is registered,
trusted and answers, namespaces are labelled for injection, and meshed pods
run ready proxies whose certificates are renewed in time. Every problem comes
with how to fix it. Exit code 1 when a check fails, 0 otherwise (warnings
included).

  --kubeconfig FILE      default $KUBECONFIG, then ~/.kube/config
  --context NAME         a kubeconfig context other than the current one
  -o, --output FORMAT    text (default), json or yaml
  --ca-expiry-days N     fail when a CA certificate expires within N days (default ${DEFAULT_CA_EXPIRY_DAYS})
  --no-proxy-metrics     do not read each meshed pod's proxy metrics (certificate expiry)`;

export const checkCommand: Command = {
  name: 'check',
  summary: 'check that the mesh is healthy, and say how to fix what is not',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      ...KUBE_FLAGS,
      ...OUTPUT_FLAG,
      'ca-expiry-days': { type: 'string' },
      'no-proxy-metrics': { type: 'boolean' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const output = outputFormat(values.output, ['text', 'json', 'yaml']);
    const days = values['ca-expiry-days'] === undefined ? DEFAULT_CA_EXPIRY_DAYS : Number(values['ca-expiry-days']);
    if (!Number.isInteger(days) || days < 0) throw new UsageError(`--ca-expiry-days ${JSON.stringify(values['ca-expiry-days'])} is not a whole number of days`);
    const kube = new Kube(loadKubeConfig(values.kubeconfig, values.context));
    const lines = await runChecks(kube, { caExpiryDays: days, proxyMetrics: !values['no-proxy-metrics'] });
    process.stdout.write(output === 'json' ? JSON.stringify(lines, null, 2) + '\n' : output === 'yaml' ? stringify(lines, { lineWidth: 0 }) : formatChecks(lines));
    return checksFailed(lines) ? 1 : 0;
  },
};
