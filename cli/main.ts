#!/usr/bin/env node
// The tsmesh command: one entry point, one subcommand per file in commands/.
import { UsageError, type Command } from './command.js';

/**
 * Commands are loaded when run: the proxy (a sidecar in every pod) must not
 * pay in memory for the control plane's Kubernetes client, express and so on.
 */
interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<Command>;
}

const COMMANDS: readonly CommandEntry[] = [
  { name: 'demo', summary: 'run a whole mesh on this machine', load: async () => (await import('./commands/demo.js')).demoCommand },
  { name: 'control-plane', summary: 'run the CA, discovery and the sidecar injector', load: async () => (await import('./commands/control-plane.js')).controlPlaneCommand },
  { name: 'proxy', summary: 'run the sidecar proxy', load: async () => (await import('./commands/proxy.js')).proxyCommand },
  { name: 'init', summary: 'install the iptables redirects of a meshed pod', load: async () => (await import('./commands/init.js')).initCommand },
  { name: 'inject', summary: 'add the sidecar to Kubernetes YAML', load: async () => (await import('./commands/inject.js')).injectCommand },
  { name: 'install', summary: 'print or apply the mesh manifests', load: async () => (await import('./commands/install.js')).installCommand },
  { name: 'uninstall', summary: 'remove the mesh from a cluster', load: async () => (await import('./commands/uninstall.js')).uninstallCommand },
  { name: 'check', summary: 'is the mesh healthy', load: async () => (await import('./commands/check.js')).checkCommand },
  { name: 'stat', summary: 'golden metrics per workload', load: async () => (await import('./commands/stat.js')).statCommand },
  { name: 'proxy-status', summary: 'the proxies on the discovery stream, and their config sync', load: async () => (await import('./commands/proxy-status.js')).proxyStatusCommand },
  { name: 'proxy-config', summary: 'the config in force in one proxy', load: async () => (await import('./commands/proxy-config.js')).proxyConfigCommand },
  { name: 'tap', summary: 'live requests of a workload, namespace or pod', load: async () => (await import('./commands/tap.js')).tapCommand },
  { name: 'ca', summary: 'create a root CA, issue a certificate', load: async () => (await import('./commands/ca.js')).caCommand },
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'tsmesh: a service mesh for Kubernetes.',
    '',
    'Usage: tsmesh <command> [flags]   (tsmesh <command> --help for its flags)',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    console.error(`tsmesh: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const command = await entry.load();
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`tsmesh ${name}: ${e.message}\n\n${command.usage}`);
      return 2;
    }
    console.error(`tsmesh ${name}: ${(e as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
