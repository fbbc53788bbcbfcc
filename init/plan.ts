// The redirect plan: config in, the nat table's rules out, as data first
// (PlannedRule) and then as iptables-restore text. Nothing here runs a
// command, so every plan can be read and tested as a golden file.
//
// Each rule is written in the exact form iptables-save prints it, so the plan,
// `--dry-run` and the installed table read the same.
import { cidrText, type Cidr, type Family } from './cidr.js';
import type { RedirectConfig } from './config.js';
import { multiportChunks, type PortRange } from './ports.js';

export type { Family } from './cidr.js';

export const CHAINS = {
  /** From PREROUTING: inbound TCP; skips, then capture. */
  inbound: 'TSMESH_INBOUND',
  /** REDIRECT to the proxy's inbound port. */
  inRedirect: 'TSMESH_IN_REDIRECT',
  /** From OUTPUT: the pod's own outgoing TCP; exemptions, skips, then capture. */
  output: 'TSMESH_OUTPUT',
  /** REDIRECT to the proxy's outbound port. */
  redirect: 'TSMESH_REDIRECT',
} as const;

export const OWN_CHAINS: readonly string[] = [CHAINS.inbound, CHAINS.inRedirect, CHAINS.output, CHAINS.redirect];

/** Every rule's comment starts with this, so tsmesh finds its own rules again. */
export const COMMENT_PREFIX = 'tsmesh/';

export interface PlannedRule {
  readonly chain: string;
  /** Everything after "-A <chain>", in iptables-save order. */
  readonly spec: string;
  /** What the rule is for; the comment is "tsmesh/<purpose>". */
  readonly purpose: string;
}

export interface RedirectPlan {
  readonly family: Family;
  /** What the plan does, in one line, for people reading --dry-run or logs. */
  readonly summary: string;
  readonly chains: readonly string[];
  /** Rules of tsmesh's own chains. */
  readonly rules: readonly PlannedRule[];
  /** Rules added to the built-in PREROUTING and OUTPUT chains, once. */
  readonly jumps: readonly PlannedRule[];
}

const LOOPBACK: Record<Family, string> = { ipv4: '127.0.0.1/32', ipv6: '::1/128' };

interface RuleParts {
  destination?: string;
  notDestination?: string;
  outInterface?: string;
  matches?: string;
  purpose: string;
  target: string;
}

/** Renders a rule in iptables-save's order: -d, -o, -p, matches, comment, -j. */
function rule(chain: string, parts: RuleParts): PlannedRule {
  const words: string[] = [];
  if (parts.notDestination !== undefined) words.push(`! -d ${parts.notDestination}`);
  if (parts.destination !== undefined) words.push(`-d ${parts.destination}`);
  if (parts.outInterface !== undefined) words.push(`-o ${parts.outInterface}`);
  words.push('-p tcp');
  if (parts.matches !== undefined) words.push(parts.matches);
  words.push(`-m comment --comment "${COMMENT_PREFIX}${parts.purpose}"`, `-j ${parts.target}`);
  return { chain, spec: words.join(' '), purpose: parts.purpose };
}

function portRules(chain: string, ports: readonly PortRange[], purpose: string, target: string): PlannedRule[] {
  return multiportChunks(ports).map((dports) => rule(chain, { matches: `-m multiport --dports ${dports}`, purpose, target }));
}

function cidrRules(chain: string, cidrs: readonly Cidr[], family: Family, purpose: string, target: string): PlannedRule[] {
  return cidrs.filter((c) => c.family === family).map((c) => rule(chain, { destination: cidrText(c), purpose, target }));
}

/** The rules for one address family, as data. */
export function planRules(config: RedirectConfig, family: Family): RedirectPlan {
  const { inbound, inRedirect, output, redirect } = CHAINS;
  const loopback = LOOPBACK[family];
  const rules: PlannedRule[] = [
    rule(inRedirect, { purpose: 'redirect-to-inbound-port', target: `REDIRECT --to-ports ${config.inboundPort}` }),
    rule(redirect, { purpose: 'redirect-to-outbound-port', target: `REDIRECT --to-ports ${config.outboundPort}` }),

    // Inbound: skipped ports (always the admin port) first, then capture.
    ...portRules(inbound, config.skipInboundPorts, 'skip-inbound-ports', 'RETURN'),
    ...(config.inboundPorts === 'all'
      ? [rule(inbound, { purpose: 'capture-inbound', target: inRedirect })]
      : portRules(inbound, config.inboundPorts, 'capture-inbound-ports', inRedirect)),
  ];

  // Outbound: the owner checks come first, as in Istio's sidecar rules. A
  // connection that leaves through lo to a non-loopback address is the pod
  // talking to its own pod IP. From the proxy (it picked this pod as an
  // endpoint of a service) it is inbound traffic and goes through the inbound
  // chain, skips included. From the app it stays local: the app calling itself
  // sends plain TCP, which inbound would refuse under STRICT mTLS. The app
  // calling its own Service goes out through the outbound capture below.
  for (const [owner, id] of [
    ['uid', config.proxyUid],
    ['gid', config.proxyGid],
  ] as const) {
    rules.push(
      rule(output, {
        notDestination: loopback,
        outInterface: 'lo',
        matches: `-m owner --${owner}-owner ${id}`,
        purpose: `proxy-${owner}-to-own-pod-ip`,
        target: inbound,
      }),
      rule(output, { outInterface: 'lo', matches: `-m owner ! --${owner}-owner ${id}`, purpose: `app-${owner}-loopback`, target: 'RETURN' }),
      rule(output, { matches: `-m owner --${owner}-owner ${id}`, purpose: `proxy-${owner}`, target: 'RETURN' }),
    );
  }
  // No rule for "-d 127.0.0.1": every connection to a loopback address leaves
  // through lo, and the rules above already return all of those.
  rules.push(
    ...portRules(output, config.skipOutboundPorts, 'skip-outbound-ports', 'RETURN'),
    ...cidrRules(output, config.skipOutboundCidrs, family, 'skip-outbound-cidrs', 'RETURN'),
    ...(config.outboundCidrs === 'all'
      ? [rule(output, { purpose: 'capture-outbound', target: redirect })]
      : cidrRules(output, config.outboundCidrs, family, 'capture-outbound-cidrs', redirect)),
  );

  const jumps = [
    rule('PREROUTING', { purpose: 'inbound', target: inbound }),
    rule('OUTPUT', { purpose: 'outbound', target: output }),
  ];
  const summary =
    `tsmesh ${family} redirects: inbound TCP -> :${config.inboundPort}, outbound TCP -> :${config.outboundPort}; ` +
    `traffic of uid ${config.proxyUid} and gid ${config.proxyGid} is never redirected`;
  return { family, summary, chains: OWN_CHAINS, rules: orderByChain(rules), jumps };
}

/** Groups rules chain by chain, in OWN_CHAINS order, keeping each chain's order (as iptables-save lists them). */
function orderByChain(rules: readonly PlannedRule[]): PlannedRule[] {
  return OWN_CHAINS.flatMap((chain) => rules.filter((r) => r.chain === chain));
}

export function ruleLine(r: PlannedRule): string {
  return `-A ${r.chain} ${r.spec}`;
}

/**
 * The iptables-restore input (for `--noflush`) that installs a plan in a
 * namespace holding no tsmesh rules. Declaring a chain flushes it, so the
 * same input also replaces tsmesh's chains; apply.ts adds the jumps only
 * where they are missing.
 */
export function renderRestore(plan: RedirectPlan, jumps: readonly string[] = plan.jumps.map(ruleLine), extra: readonly string[] = []): string {
  return [
    `# ${plan.summary}`,
    '*nat',
    ...plan.chains.map((c) => `:${c} - [0:0]`),
    ...extra,
    ...plan.rules.map(ruleLine),
    ...jumps,
    'COMMIT',
    '',
  ].join('\n');
}

/** Config in, iptables-restore text out, for one address family. */
export function planRedirectRules(config: RedirectConfig, family: Family): string {
  return renderRestore(planRules(config, family));
}
