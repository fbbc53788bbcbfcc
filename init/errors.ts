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

export function missingCapability(command: string, stderr: string): InitError {
  return new InitError(
    'missing-capability',
    `${command} was refused (${firstLine(stderr)}): the tsmesh-init container needs the NET_ADMIN and NET_RAW capabilities ` +
      '(securityContext.capabilities.add: [NET_ADMIN, NET_RAW]) and must run as root (runAsUser: 0)',
  );
}

export function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}
