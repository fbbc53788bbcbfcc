// tsmesh init: the first init container of every meshed pod; installs the
// iptables redirects that send the pod's TCP through its sidecar.
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { INIT_FLAGS, InitConfigError, parseInitOptions, type InitFlag } from '../../init/config.js';
import { InitError } from '../../init/errors.js';
import { dryRunExecutor, systemExecutor } from '../../init/executor.js';
import { runInit } from '../../init/run.js';
import { flagOrEnv, parseFlags, UsageError, type Command } from '../command.js';

const FLAG_NAMES = Object.keys(INIT_FLAGS) as InitFlag[];

const FLAG_LINES: [string, string][] = [
  ...FLAG_NAMES.map((name): [string, string] => {
    const spec = INIT_FLAGS[name];
    const dflt = 'default' in spec && spec.default !== '' ? ` (default ${JSON.stringify(spec.default)})` : '';
    return [`--${name}${spec.kind === 'string' ? ' VALUE' : ''}`, `${spec.help}${dflt}  [${spec.env}]`];
  }),
  ['--log-level LEVEL', 'error, warn, info, debug (default "info")  [TSMESH_LOG_LEVEL]'],
];
const WIDTH = Math.max(...FLAG_LINES.map(([left]) => left.length)) + 2;

const USAGE = [
  'Usage: tsmesh init [flags]',
  '',
  "Installs the nat rules that redirect the pod's TCP to its proxy; needs NET_ADMIN and NET_RAW.",
  'Prints the iptables-restore input it runs and the nat table it leaves. Each flag can also be',
  'set by the variable in brackets.',
  '',
  ...FLAG_LINES.map(([left, right]) => `  ${left.padEnd(WIDTH)}${right}`),
].join('\n');

export const initCommand: Command = {
  name: 'init',
  summary: 'install the iptables redirects of a meshed pod (init container)',
  usage: USAGE,
  async run(argv) {
    const options = Object.fromEntries(FLAG_NAMES.map((name) => [name, { type: INIT_FLAGS[name].kind }])) as Record<
      InitFlag,
      { type: 'string' | 'boolean' }
    >;
    const { values } = parseFlags(argv, { ...options, 'log-level': { type: 'string' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const flags = Object.fromEntries(FLAG_NAMES.map((name) => [name, values[name]]));
    let parsed;
    try {
      parsed = parseInitOptions(flags, process.env);
    } catch (e) {
      if (e instanceof InitConfigError) throw new UsageError(e.message);
      throw e;
    }
    const log = createLogger('init', parseLogLevel(flagOrEnv(values['log-level'], 'TSMESH_LOG_LEVEL', 'info')!));
    const exec = parsed.dryRun ? dryRunExecutor(systemExecutor) : systemExecutor;
    try {
      await runInit(parsed, { exec, log, print: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`) });
    } catch (e) {
      if (e instanceof InitError) {
        log.error(e.message, { code: e.code });
        return 1;
      }
      throw e;
    }
    return 0;
  },
};
