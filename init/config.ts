// What `tsmesh init` is told: every flag, the TSMESH_* variable that can stand
// in for it, and its default, in one table the webhook can import; then the
// parse from (flags, environment) to a typed config, with errors that name the
// flag (or variable) and the value that was wrong.
import { CIDR_LIST_HINT, parseCidrList, type Cidr } from './cidr.js';
import { PORT_LIST_HINT, parsePort, parsePortList, uniquePorts, type PortRange } from './ports.js';
import { PORTS } from '../contract/ports.js';
import { PROXY_UID } from '../contract/names.js';

/** The proxy's admin port (/live, /ready, /metrics): never redirected, so kubelet probes always reach it. */
export const ADMIN_PORT = PORTS.proxyAdmin;

export const IPTABLES_BACKENDS = ['nft', 'legacy'] as const;
export type IptablesBackend = (typeof IPTABLES_BACKENDS)[number];

interface FlagSpec {
  readonly env: string;
  readonly kind: 'string' | 'boolean';
  readonly default?: string;
  readonly help: string;
}

export const INIT_FLAGS = {
  'proxy-uid': { env: 'TSMESH_PROXY_UID', kind: 'string', default: String(PROXY_UID), help: 'uid the proxy runs as; its traffic is never redirected' },
  'proxy-gid': { env: 'TSMESH_PROXY_GID', kind: 'string', default: String(PROXY_UID), help: 'gid the proxy runs as; its traffic is never redirected' },
  'inbound-port': { env: 'TSMESH_INBOUND_PORT', kind: 'string', default: String(PORTS.inbound), help: 'port the proxy captures inbound TCP on' },
  'outbound-port': { env: 'TSMESH_OUTBOUND_PORT', kind: 'string', default: String(PORTS.outbound), help: 'port the proxy captures outbound TCP on' },
  'inbound-ports': {
    env: 'TSMESH_INBOUND_PORTS',
    kind: 'string',
    default: '*',
    help: 'inbound ports to capture: "*" for all, or a list like 8080,9000-9100 ("" captures none)',
  },
  'skip-inbound-ports': {
    env: 'TSMESH_SKIP_INBOUND_PORTS',
    kind: 'string',
    default: '',
    help: `inbound ports never captured (the admin port ${ADMIN_PORT} never is)`,
  },
  'outbound-cidrs': {
    env: 'TSMESH_OUTBOUND_CIDRS',
    kind: 'string',
    default: '*',
    help: 'destinations whose outbound TCP is captured: "*" for all, or a list like 10.96.0.0/12,fd00::/8',
  },
  'skip-outbound-ports': { env: 'TSMESH_SKIP_OUTBOUND_PORTS', kind: 'string', default: '', help: 'outbound destination ports never captured' },
  'skip-outbound-cidrs': { env: 'TSMESH_SKIP_OUTBOUND_CIDRS', kind: 'string', default: '', help: 'outbound destinations never captured' },
  ipv6: { env: 'TSMESH_IPV6', kind: 'string', default: 'auto', help: 'also redirect IPv6: auto (when the pod has an IPv6 address), true, false' },
  'iptables-backend': {
    env: 'TSMESH_IPTABLES_BACKEND',
    kind: 'string',
    default: 'auto',
    help: 'auto (the one that already holds rules; nft otherwise), nft, legacy',
  },
  'dry-run': { env: 'TSMESH_DRY_RUN', kind: 'boolean', help: 'print the exact iptables-restore input and change nothing' },
  cleanup: { env: 'TSMESH_CLEANUP', kind: 'boolean', help: "remove tsmesh's chains and jumps, leaving every other rule as it was" },
} as const satisfies Record<string, FlagSpec>;

export type InitFlag = keyof typeof INIT_FLAGS;

/** The redirect rules' input: everything planRedirectRules needs, nothing about how to apply them. */
export interface RedirectConfig {
  readonly proxyUid: number;
  readonly proxyGid: number;
  readonly inboundPort: number;
  readonly outboundPort: number;
  /** Inbound destination ports to capture; 'all' captures every port not skipped. */
  readonly inboundPorts: 'all' | readonly PortRange[];
  /** Always starts with the admin port. */
  readonly skipInboundPorts: readonly PortRange[];
  /** Outbound destinations to capture; 'all' captures every destination not skipped. */
  readonly outboundCidrs: 'all' | readonly Cidr[];
  readonly skipOutboundPorts: readonly PortRange[];
  readonly skipOutboundCidrs: readonly Cidr[];
}

export interface InitOptions {
  readonly redirect: RedirectConfig;
  readonly ipv6: 'auto' | boolean;
  readonly backend: 'auto' | IptablesBackend;
  readonly dryRun: boolean;
  readonly cleanup: boolean;
}

/** A bad flag or variable value; the message names it and says what is expected. */
export class InitConfigError extends Error {
  override name = 'InitConfigError';
}

export type FlagValues = Readonly<Partial<Record<InitFlag, string | boolean | undefined>>>;
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Reads each setting from its flag, else its TSMESH_* variable (an empty
 * variable counts as unset), else its default.
 */
export function parseInitOptions(flags: FlagValues, env: Environment = {}): InitOptions {
  const read = (flag: InitFlag): { value: string | undefined; source: string } => {
    const given = flags[flag];
    if (given !== undefined) return { value: String(given), source: `--${flag}` };
    const spec: FlagSpec = INIT_FLAGS[flag];
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, source: spec.env };
    return { value: spec.default, source: `--${flag}` };
  };
  const fail = (source: string, message: string): never => {
    throw new InitConfigError(`${source}: ${message}`);
  };
  const withSource = <T>(flag: InitFlag, parse: (text: string, source: string) => T): T => {
    const { value, source } = read(flag);
    try {
      return parse(value ?? '', source);
    } catch (e) {
      if (e instanceof InitConfigError) throw e;
      return fail(source, (e as Error).message);
    }
  };

  const id = (text: string, source: string): number =>
    /^\d{1,10}$/.test(text) && Number(text) < 2 ** 32 - 1 ? Number(text) : fail(source, `${JSON.stringify(text)} is not a numeric id`);
  const port = (text: string, source: string): number =>
    parsePort(text) ?? fail(source, `${JSON.stringify(text)} is not a port; expected a number from 1 to 65535`);
  const ports = (text: string, source: string): PortRange[] => {
    try {
      return parsePortList(text);
    } catch (e) {
      return fail(source, `${(e as Error).message}; ${PORT_LIST_HINT}`);
    }
  };
  const cidrs = (text: string, source: string): Cidr[] => {
    try {
      return parseCidrList(text);
    } catch (e) {
      return fail(source, `${(e as Error).message}; ${CIDR_LIST_HINT}`);
    }
  };
  const bool = (text: string, source: string): boolean => {
    const t = text.toLowerCase();
    if (['true', '1', 'yes'].includes(t)) return true;
    if (['false', '0', 'no', ''].includes(t)) return false;
    return fail(source, `${JSON.stringify(text)} is not a boolean; expected true or false`);
  };

  const redirect: RedirectConfig = {
    proxyUid: withSource('proxy-uid', id),
    proxyGid: withSource('proxy-gid', id),
    inboundPort: withSource('inbound-port', port),
    outboundPort: withSource('outbound-port', port),
    inboundPorts: withSource('inbound-ports', (t, s) => (t.trim() === '*' ? 'all' : uniquePorts(ports(t, s)))),
    skipInboundPorts: uniquePorts([{ first: ADMIN_PORT, last: ADMIN_PORT }, ...withSource('skip-inbound-ports', ports)]),
    outboundCidrs: withSource('outbound-cidrs', (t, s) => (t.trim() === '*' ? 'all' : cidrs(t, s))),
    skipOutboundPorts: uniquePorts(withSource('skip-outbound-ports', ports)),
    skipOutboundCidrs: withSource('skip-outbound-cidrs', cidrs),
  };
  if (redirect.inboundPort === redirect.outboundPort) {
    fail('--inbound-port', `${redirect.inboundPort} is also the outbound port; the proxy needs two different ports`);
  }
  for (const [flag, value] of [['inbound-port', redirect.inboundPort], ['outbound-port', redirect.outboundPort]] as const) {
    if (value === ADMIN_PORT) fail(`--${flag}`, `${value} is the proxy's admin port; choose another`);
  }

  const ipv6 = withSource('ipv6', (t, s): 'auto' | boolean => (t.toLowerCase() === 'auto' ? 'auto' : bool(t, s)));
  const backend = withSource('iptables-backend', (t, s): 'auto' | IptablesBackend => {
    if (t === 'auto' || (IPTABLES_BACKENDS as readonly string[]).includes(t)) return t as 'auto' | IptablesBackend;
    return fail(s, `${JSON.stringify(t)} is not a backend; expected auto, ${IPTABLES_BACKENDS.join(' or ')}`);
  });
  return { redirect, ipv6, backend, dryRun: withSource('dry-run', bool), cleanup: withSource('cleanup', bool) };
}
