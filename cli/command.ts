// What every subcommand looks like, and the argument parsing they share.
import type { ParseArgsConfig } from 'node:util';
import { PORTS } from '../contract/ports.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { parseArgs } = process.getBuiltinModule('node:util');

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseFlags<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

/** Reads a flag, else an environment variable, else a default. */
export function flagOrEnv(value: string | undefined, env: string, fallback?: string): string | undefined {
  return value ?? process.env[env] ?? fallback;
}

/**
 * -o/--output, as kubectl names it: one of `formats`, the first when not
 * given. Anything else is a UsageError naming the choices.
 */
export function outputFormat<F extends string>(value: string | undefined, formats: readonly [F, ...F[]]): F {
  if (value === undefined) return formats[0];
  if ((formats as readonly string[]).includes(value)) return value as F;
  throw new UsageError(`-o/--output ${JSON.stringify(value)} is not one of ${formats.join(', ')}`);
}

/** The flags of a command that talks to Kubernetes, as kubectl spells them: --kubeconfig FILE, --context NAME. */
export const KUBE_FLAGS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
} as const;

/** The output flag, -o FORMAT or --output FORMAT (read it with outputFormat). */
export const OUTPUT_FLAG = { output: { type: 'string', short: 'o' } } as const;

/** --admin-address HOST:PORT, of the commands that read the control plane's admin port (read it with adminAddress). */
export const ADMIN_ADDRESS_FLAG = { 'admin-address': { type: 'string' } } as const;

/** The usage line of ADMIN_ADDRESS_FLAG, aligned as the commands' flag lists are. */
export const ADMIN_ADDRESS_USAGE = `  --admin-address HOST:PORT  the control plane's admin port (default 127.0.0.1:${PORTS.controlPlaneAdmin})`;

/** --admin-address, checked: HOST:PORT, the control plane's admin port on loopback when not given. */
export function adminAddress(value: string | undefined): string {
  const address = value ?? `127.0.0.1:${PORTS.controlPlaneAdmin}`;
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:/[\]\s]+):\d{1,5}$/.test(address)) throw new UsageError(`--admin-address ${JSON.stringify(address)} must be HOST:PORT (an IPv6 address in brackets)`);
  return address;
}
