// `tsmesh init`: install (or remove) the redirects that send a pod's TCP
// through its sidecar. runInit ties the config (config.ts), the pure planner
// (plan.ts) and the backend choice (backend.ts) to an Executor.
import { readFileSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { Logger } from '../lib/log.js';
import { applyPlan, cleanupRules, type FamilyOutcome } from './apply.js';
import { detectBackend, toolsFor, type BackendChoice } from './backend.js';
import type { Family } from './cidr.js';
import { IPTABLES_BACKENDS, type InitOptions } from './config.js';
import { capabilitiesMissing, isPermissionError, missingCapability, missingNetCapabilities } from './errors.js';
import { NOT_FOUND, type Executor } from './executor.js';
import { planRules } from './plan.js';

export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

export interface InitDeps {
  readonly exec: Executor;
  readonly log: Logger;
  /** Where the restore inputs and resulting tables go for people to read (stdout). */
  readonly print: (text: string) => void;
  readonly interfaces?: () => Interfaces;
  /** The text of /proc/self/status (for the capability check); undefined skips the check. */
  readonly procStatus?: () => string | undefined;
}

export interface InitReport {
  /** The backend written to; undefined for cleanup, which looks at every backend. */
  readonly backend: BackendChoice | undefined;
  readonly outcomes: readonly FamilyOutcome[];
}

/** True when the pod has an IPv6 address other than loopback and link-local ones. */
export function hasPodIPv6(interfaces: Interfaces): boolean {
  return Object.values(interfaces).some((list) =>
    (list ?? []).some((a) => a.family === 'IPv6' && !a.internal && !/^fe[89ab]/i.test(a.address)),
  );
}

function familiesFor(options: InitOptions, interfaces: () => Interfaces): Family[] {
  const ipv6 = options.ipv6 === 'auto' ? hasPodIPv6(interfaces()) : options.ipv6;
  return ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

function show(deps: InitDeps, outcome: FamilyOutcome, dryRun: boolean): void {
  if (outcome.input === undefined) return;
  deps.print(`# ${dryRun ? 'would run' : 'ran'}: ${outcome.command}\n${outcome.input}`);
  if (outcome.after !== undefined) deps.print(`# ${outcome.family} nat table now:\n${outcome.after}`);
}

/** Reads /proc/self/status; undefined where there is none. */
export function readProcStatus(): string | undefined {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
}

export async function runInit(options: InitOptions, deps: InitDeps): Promise<InitReport> {
  if (!options.dryRun) {
    const status = (deps.procStatus ?? readProcStatus)();
    const missing = status === undefined ? undefined : missingNetCapabilities(status);
    if (missing !== undefined && missing.length > 0) throw capabilitiesMissing(missing);
  }
  const families = familiesFor(options, deps.interfaces ?? networkInterfaces);
  return options.cleanup ? cleanup(options, families, deps) : install(options, families, deps);
}

async function install(options: InitOptions, families: Family[], deps: InitDeps): Promise<InitReport> {
  const { exec, log, print } = deps;
  let backend: BackendChoice;
  try {
    backend = await detectBackend(exec, families, options.backend);
  } catch (e) {
    if (!options.dryRun) throw e;
    // A dry run on a workstation still shows the plan: the input for a pod without tsmesh rules.
    backend = { backend: options.backend === 'auto' ? 'nft' : options.backend, reason: `cannot read the current rules (${(e as Error).message})` };
    print(`# cannot read the current rules; showing the input for a pod without tsmesh rules`);
  }
  log.info('iptables backend', { backend: backend.backend, reason: backend.reason, families });
  const outcomes: FamilyOutcome[] = [];
  for (const family of families) {
    const plan = planRules(options.redirect, family);
    const outcome = await applyPlan(exec, toolsFor(backend.backend, family), plan, options.dryRun);
    show(deps, outcome, options.dryRun);
    if (!options.dryRun) log.info('redirects installed', { family, command: outcome.command });
    outcomes.push(outcome);
  }
  return { backend, outcomes };
}

/** Removes tsmesh's rules from every backend that holds them: the namespace goes back to what it was. */
async function cleanup(options: InitOptions, families: Family[], deps: InitDeps): Promise<InitReport> {
  const { exec, log } = deps;
  const backends = options.backend === 'auto' ? IPTABLES_BACKENDS : [options.backend];
  // Cleanup looks at IPv6 unless told not to: an earlier run may have installed rules there.
  const cleanFamilies: Family[] = options.ipv6 === false ? families : ['ipv4', 'ipv6'];
  const outcomes: FamilyOutcome[] = [];
  for (const backend of backends) {
    for (const family of cleanFamilies) {
      const tools = toolsFor(backend, family);
      const probe = await exec.run(tools.save, []);
      if (probe.code === NOT_FOUND) continue;
      if (probe.code !== 0) {
        if (isPermissionError(probe.stderr) && !options.dryRun) throw missingCapability(tools.save, probe.stderr);
        log.warn('cannot read rules; skipped', { command: tools.save, error: probe.stderr.trim() });
        continue;
      }
      const outcome = await cleanupRules(exec, tools, family, options.dryRun);
      show(deps, outcome, options.dryRun);
      if (outcome.input !== undefined) {
        log.info(options.dryRun ? 'would remove redirects' : 'redirects removed', { backend, family });
        outcomes.push(outcome);
      }
    }
  }
  if (outcomes.length === 0) log.info('no tsmesh rules found; nothing to remove');
  return { backend: undefined, outcomes };
}
