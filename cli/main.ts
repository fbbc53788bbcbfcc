#!/usr/bin/env node
// The tsmesh command: one entry point, one subcommand per file in commands/.
import { caCommand } from './commands/ca.js';
import { controlPlaneCommand } from './commands/control-plane.js';
import { proxyCommand } from './commands/proxy.js';
import { initCommand } from './commands/init.js';
import { injectCommand } from './commands/inject.js';
import { installCommand } from './commands/install.js';
import { uninstallCommand } from './commands/uninstall.js';
import { checkCommand } from './commands/check.js';
import { UsageError, type Command } from './command.js';

const COMMANDS: readonly Command[] = [controlPlaneCommand, proxyCommand, initCommand, injectCommand, caCommand, installCommand, uninstallCommand, checkCommand];

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
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`tsmesh: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
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
