// Applying a plan: read the nat table, write one iptables-restore input that
// replaces only tsmesh's chains (declaring a chain in --noflush mode flushes
// it) and adds the PREROUTING/OUTPUT jumps only where they are missing, run it
// as one atomic transaction, then check the result. Cleanup is the same in
// reverse. Reading and deciding (parseNat, applyInput, cleanupInput) are pure;
// only applyPlan and cleanupRules run commands, through an Executor.
import type { Family } from './cidr.js';
import { firstLine, InitError, isPermissionError, missingCapability } from './errors.js';
import type { Executor } from './executor.js';
import type { IptablesTools } from './backend.js';
import { COMMENT_PREFIX, OWN_CHAINS, renderRestore, ruleLine, type RedirectPlan } from './plan.js';

/**
 * Arguments of every iptables-restore run: keep all other rules, and wait for
 * the xtables lock (legacy iptables) rather than fail if another program holds it.
 */
export const RESTORE_ARGS: readonly string[] = ['--noflush', '--wait=10'];

/** tsmesh's chains all start with this; cleanup removes every chain that does. */
export const OWN_CHAIN_PREFIX = 'TSMESH_';

export interface SavedRule {
  readonly chain: string;
  /** Everything after "-A <chain> ". */
  readonly spec: string;
}

export interface NatTable {
  /** Chain names in the order iptables-save declares them. */
  readonly chains: readonly string[];
  readonly rules: readonly SavedRule[];
}

/** The nat section of iptables-save output; empty when the table does not exist yet. */
export function parseNat(saved: string): NatTable {
  const chains: string[] = [];
  const rules: SavedRule[] = [];
  let inNat = false;
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) inNat = line === '*nat';
    else if (!inNat) continue;
    else if (line === 'COMMIT') inNat = false;
    else if (line.startsWith(':')) chains.push(line.slice(1).split(' ')[0] ?? '');
    else if (line.startsWith('-A ')) {
      const [, chain = '', ...rest] = line.split(' ');
      rules.push({ chain, spec: rest.join(' ') });
    }
  }
  return { chains, rules };
}

/** The nat section of iptables-save output as text, without the timestamp comments. */
export function natSection(saved: string): string {
  const lines = saved.split('\n');
  const start = lines.indexOf('*nat');
  if (start < 0) return '';
  const end = lines.indexOf('COMMIT', start);
  return lines.slice(start, end < 0 ? undefined : end + 1).join('\n') + '\n';
}

const JUMP_TO_OWN = new RegExp(`(?:^| )-j (${OWN_CHAIN_PREFIX}\\S*)`);

function isOwnChain(chain: string): boolean {
  return chain.startsWith(OWN_CHAIN_PREFIX);
}

/** Rules outside tsmesh's chains that jump into one of them (the jumps from PREROUTING and OUTPUT). */
function ownJumps(table: NatTable): SavedRule[] {
  return table.rules.filter((r) => !isOwnChain(r.chain) && JUMP_TO_OWN.test(r.spec));
}

/**
 * The restore input that takes `current` to the plan: tsmesh's chains are
 * declared (created, or flushed) and refilled; a jump already in place is
 * kept where it is, so a re-run leaves iptables-save unchanged; a stale or
 * duplicate jump is deleted.
 */
export function applyInput(plan: RedirectPlan, current: NatTable): string {
  const wanted = plan.jumps.map(ruleLine);
  const kept = new Set<string>();
  const deletes: string[] = [];
  for (const r of ownJumps(current)) {
    const line = `-A ${r.chain} ${r.spec}`;
    if (wanted.includes(line) && !kept.has(line)) kept.add(line);
    else deletes.push(`-D ${r.chain} ${r.spec}`);
  }
  return renderRestore(
    plan,
    wanted.filter((line) => !kept.has(line)),
    deletes,
  );
}

/** The restore input that removes every tsmesh jump and chain; undefined when there is none. */
export function cleanupInput(current: NatTable): string | undefined {
  const chains = current.chains.filter(isOwnChain);
  const jumps = ownJumps(current);
  if (chains.length === 0 && jumps.length === 0) return undefined;
  return [
    "# tsmesh cleanup: delete tsmesh's jumps and chains; every other rule stays",
    '*nat',
    ...jumps.map((r) => `-D ${r.chain} ${r.spec}`),
    // Flush all before deleting any: a chain cannot go while another still jumps to it.
    ...chains.map((c) => `-F ${c}`),
    ...chains.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
}

/** Checks that the table holds the plan: every chain with its rules, every jump exactly once. */
export function verifyApplied(plan: RedirectPlan, table: NatTable): string[] {
  const problems: string[] = [];
  for (const chain of OWN_CHAINS) {
    if (!table.chains.includes(chain)) problems.push(`chain ${chain} is missing`);
    const want = plan.rules.filter((r) => r.chain === chain).map((r) => r.spec);
    const have = table.rules.filter((r) => r.chain === chain).map((r) => r.spec);
    // Counts, not text: another iptables release may print the same rule differently.
    if (want.length !== have.length) problems.push(`chain ${chain} holds ${have.length} rules, the plan has ${want.length}`);
  }
  for (const jump of plan.jumps) {
    const comment = `--comment "${COMMENT_PREFIX}${jump.purpose}"`;
    const found = table.rules.filter((r) => r.chain === jump.chain && r.spec.includes(comment)).length;
    if (found !== 1) problems.push(`${jump.chain} holds ${found} tsmesh/${jump.purpose} jumps, expected 1`);
  }
  return problems;
}

export interface FamilyOutcome {
  readonly family: Family;
  /** The iptables-restore command line. */
  readonly command: string;
  /** The exact iptables-restore input; undefined when there was nothing to do. */
  readonly input: string | undefined;
  /** The nat table afterwards (without timestamps); undefined in a dry run. */
  readonly after: string | undefined;
}

async function readTable(exec: Executor, tools: IptablesTools, dryRun: boolean): Promise<{ saved: string; readable: boolean }> {
  // Without "-t nat": naming a table would create it, and reading must change nothing.
  const r = await exec.run(tools.save, []);
  if (r.code === 0) return { saved: r.stdout, readable: true };
  // A dry run on a machine without the privilege still shows the input for a fresh pod.
  if (dryRun) return { saved: '', readable: false };
  if (isPermissionError(r.stderr)) throw missingCapability(tools.save, r.stderr);
  throw new InitError('iptables-failed', `${tools.save} failed: ${firstLine(r.stderr)}`);
}

function restoreCommand(tools: IptablesTools): string {
  return [tools.restore, ...RESTORE_ARGS].join(' ');
}

async function restore(exec: Executor, tools: IptablesTools, input: string): Promise<void> {
  const r = await exec.run(tools.restore, RESTORE_ARGS, input);
  if (r.code === 0) return;
  if (isPermissionError(r.stderr)) throw missingCapability(tools.restore, r.stderr);
  // iptables-restore names the failing line ("line 12 failed"); show it.
  const lineNo = /line:? (\d+)/.exec(r.stderr)?.[1];
  const line = lineNo === undefined ? undefined : input.split('\n')[Number(lineNo) - 1];
  throw new InitError(
    'iptables-failed',
    `${tools.restore} ${RESTORE_ARGS.join(' ')} failed: ${r.stderr.trim()}${line === undefined ? '' : `\n  the failing line: ${line}`}`,
  );
}

export async function applyPlan(exec: Executor, tools: IptablesTools, plan: RedirectPlan, dryRun: boolean): Promise<FamilyOutcome> {
  const { saved } = await readTable(exec, tools, dryRun);
  const input = applyInput(plan, parseNat(saved));
  if (dryRun) return { family: plan.family, command: restoreCommand(tools), input, after: undefined };
  await restore(exec, tools, input);
  const { saved: afterSaved } = await readTable(exec, tools, false);
  const problems = verifyApplied(plan, parseNat(afterSaved));
  if (problems.length > 0) {
    throw new InitError('verify-failed', `after ${tools.restore} the ${plan.family} nat table does not hold the plan: ${problems.join('; ')}`);
  }
  return { family: plan.family, command: restoreCommand(tools), input, after: natSection(afterSaved) };
}

export async function cleanupRules(exec: Executor, tools: IptablesTools, family: Family, dryRun: boolean): Promise<FamilyOutcome> {
  const { saved } = await readTable(exec, tools, dryRun);
  const input = cleanupInput(parseNat(saved));
  if (input === undefined || dryRun) return { family, command: restoreCommand(tools), input, after: undefined };
  await restore(exec, tools, input);
  const { saved: afterSaved } = await readTable(exec, tools, false);
  const left = parseNat(afterSaved).chains.filter(isOwnChain);
  if (left.length > 0) throw new InitError('verify-failed', `after cleanup the ${family} nat table still holds ${left.join(', ')}`);
  return { family, command: restoreCommand(tools), input, after: natSection(afterSaved) };
}
