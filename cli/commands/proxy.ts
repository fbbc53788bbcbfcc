// tsmesh proxy: the sidecar. Settings come from TSMESH_* variables (set by the
// webhook; see proxy/env.ts); a few flags override them for standalone use.
// The process is assembled by proxy/process.ts; here: flags, signals, exit code.
import { readProxySettings } from '../../proxy/env.js';
import { startProxy } from '../../proxy/process.js';
import { PROXY_ENV } from '../../contract/env.js';
import { createLogger, parseLogLevel } from '../../lib/log.js';
import { parseFlags, type Command } from '../command.js';

const USAGE = `Usage: tsmesh proxy [--config-file FILE]

Without --config-file the proxy runs on the control plane's discovery stream
(${PROXY_ENV.CONTROL_PLANE_ADDRESS}).

Runs the sidecar: outbound capture on ${PROXY_ENV.OUTBOUND_PORT} (15001), inbound on
${PROXY_ENV.INBOUND_PORT} (15006), admin on ${PROXY_ENV.ADMIN_PORT} (15020). Every setting is a
TSMESH_* variable (see proxy/env.ts); the webhook sets them in meshed pods.

  --config-file FILE   run on a ProxyConfig file (YAML or JSON), re-read on change  [${PROXY_ENV.CONFIG_FILE}]`;

export const proxyCommand: Command = {
  name: 'proxy',
  summary: 'run the sidecar proxy',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { 'config-file': { type: 'string' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const settings = readProxySettings();
    const log = createLogger('proxy', parseLogLevel(settings.logLevel));
    const proxy = await startProxy({ ...settings, configFile: values['config-file'] ?? settings.configFile }, { log, releaseMemory: true });
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    await proxy.drain(proxy.drainMs, { signal });
    return 0;
  },
};
