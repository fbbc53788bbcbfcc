// The errors `tsmesh init` reports, with stable codes, each saying how to fix it.

export type InitErrorCode = 'missing-capability' | 'iptables-not-found' | 'iptables-failed' | 'verify-failed' | 'ipv6-unavailable';

export class InitError extends Error {
  override name = 'InitError';
  constructor(
    readonly code: InitErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const PERMISSION = /permission denied|operation not permitted|you must be root/i;

/** True when a command's error output says it lacked the privilege to touch netfilter. */
export function isPermissionError(stderr: string): boolean {
  return PERMISSION.test(stderr);
}

const CAPABILITY_HINT =
  'the tsmesh-init container needs the NET_ADMIN and NET_RAW capabilities ' +
  '(securityContext.capabilities.add: [NET_ADMIN, NET_RAW]) and must run as root (runAsUser: 0)';

export function missingCapability(command: string, stderr: string): InitError {
  return new InitError('missing-capability', `${command} was refused (${firstLine(stderr)}): ${CAPABILITY_HINT}`);
}

// Bit numbers from linux/capability.h.
const NET_CAPABILITIES = { NET_ADMIN: 12n, NET_RAW: 13n } as const;

/**
 * The network capabilities missing from a process, read from the CapEff line
 * of /proc/self/status; undefined when the text has no such line. Checked up
 * front because legacy iptables reports a missing capability only as "unable
 * to initialize table".
 */
export function missingNetCapabilities(procStatus: string): string[] | undefined {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(procStatus)?.[1];
  if (hex === undefined) return undefined;
  const effective = BigInt(`0x${hex}`);
  return Object.entries(NET_CAPABILITIES)
    .filter(([, bit]) => (effective & (1n << bit)) === 0n)
    .map(([name]) => name);
}

export function capabilitiesMissing(missing: readonly string[]): InitError {
  return new InitError('missing-capability', `this process lacks ${missing.join(' and ')}: ${CAPABILITY_HINT}`);
}

export function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}
