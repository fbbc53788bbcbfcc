// Which iptables: the nf_tables one or the legacy one. Both may be installed
// and both may hold rules in the same namespace, but packets go through both,
// and rules that jump between them cannot; so tsmesh writes to the backend
// that already holds rules (the one the node's CNI or an earlier run used),
// and to nft when neither holds any, as current distributions do.
import type { Family } from './cidr.js';
import { IPTABLES_BACKENDS, type IptablesBackend } from './config.js';
import { firstLine, InitError, isPermissionError, missingCapability } from './errors.js';
import { NOT_FOUND, type Executor } from './executor.js';

export interface IptablesTools {
  readonly save: string;
  readonly restore: string;
}

export function toolsFor(backend: IptablesBackend, family: Family): IptablesTools {
  const base = family === 'ipv4' ? 'iptables' : 'ip6tables';
  return { save: `${base}-${backend}-save`, restore: `${base}-${backend}-restore` };
}

export interface BackendChoice {
  readonly backend: IptablesBackend;
  /** Why this one, for the log. */
  readonly reason: string;
}

type Probe =
  | { readonly state: 'ok'; readonly rules: number }
  | { readonly state: 'missing' | 'denied' | 'failed'; readonly command: string; readonly stderr: string };

/** Rules and user chains in iptables-save output: what "already holds rules" means. */
export function countRules(saved: string): number {
  return saved.split('\n').filter((line) => line.startsWith('-A ') || /^:\S+ - /.test(line)).length;
}

async function probe(exec: Executor, backend: IptablesBackend, families: readonly Family[]): Promise<Probe> {
  let rules = 0;
  for (const family of families) {
    const { save } = toolsFor(backend, family);
    // Without "-t": listing every table reads state without creating any.
    const r = await exec.run(save, []);
    if (r.code === NOT_FOUND) return { state: 'missing', command: save, stderr: r.stderr };
    if (r.code !== 0) return { state: isPermissionError(r.stderr) ? 'denied' : 'failed', command: save, stderr: r.stderr };
    rules += countRules(r.stdout);
  }
  return { state: 'ok', rules };
}

function probeError(p: Exclude<Probe, { state: 'ok' }>): InitError {
  switch (p.state) {
    case 'denied':
      return missingCapability(p.command, p.stderr);
    case 'missing':
      return new InitError('iptables-not-found', `${p.command} is not installed: the tsmesh image needs the iptables package (iptables-nft and iptables-legacy)`);
    case 'failed':
      return new InitError('iptables-failed', `${p.command} failed: ${firstLine(p.stderr)}`);
  }
}

export async function detectBackend(exec: Executor, families: readonly Family[], requested: 'auto' | IptablesBackend): Promise<BackendChoice> {
  if (requested !== 'auto') {
    const p = await probe(exec, requested, families);
    if (p.state !== 'ok') throw probeError(p);
    return { backend: requested, reason: 'set by --iptables-backend' };
  }
  const probes = new Map<IptablesBackend, Probe>();
  for (const backend of IPTABLES_BACKENDS) probes.set(backend, await probe(exec, backend, families));
  const usable = IPTABLES_BACKENDS.flatMap((backend) => {
    const p = probes.get(backend);
    return p?.state === 'ok' ? [{ backend, rules: p.rules }] : [];
  });
  // IPTABLES_BACKENDS lists nft first, so a tie goes to nft.
  const withRules = usable.filter((u) => u.rules > 0).sort((a, b) => b.rules - a.rules);
  const best = withRules[0];
  if (best) {
    const others = usable.filter((u) => u !== best).map((u) => `${u.backend} holds ${u.rules}`);
    return { backend: best.backend, reason: `it holds ${best.rules} rules and chains${others.length ? `; ${others.join(', ')}` : ''}` };
  }
  const first = usable[0];
  if (first) return { backend: first.backend, reason: usable.length > 1 ? 'no backend holds rules yet; nft preferred' : `the only usable backend` };
  // Nothing usable: report the most telling failure.
  const failures = [...probes.values()].filter((p): p is Exclude<Probe, { state: 'ok' }> => p.state !== 'ok');
  const worst = failures.find((p) => p.state === 'denied') ?? failures.find((p) => p.state === 'failed') ?? failures[0];
  throw worst ? probeError(worst) : new InitError('iptables-not-found', 'no iptables backend found');
}
