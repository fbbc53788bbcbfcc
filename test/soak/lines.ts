// Reading a long-running process's output as it comes: the apps log a line
// per request and the loads a line per request they made, a few hundred a
// second between them, so the soak takes those lines once and drops them
// from what the process keeps (lib/netns.ts Managed keeps all its output).
import type { Managed } from '../../lib/netns.js';

/**
 * The whole lines `m` printed since the last call for which `take` holds;
 * they are removed from m.stdout, every other line stays (a ready line, a
 * control acknowledgement that StreamLab.controlApp finds by counting, a
 * load's summary), as does a line still being written.
 */
export function takeLines(m: Managed, take: (line: string) => boolean): string[] {
  const cut = m.stdout.lastIndexOf('\n');
  if (cut < 0) return [];
  const taken: string[] = [];
  let kept = '';
  for (const line of m.stdout.slice(0, cut).split('\n')) {
    if (take(line)) taken.push(line);
    else kept += `${line}\n`;
  }
  m.stdout = kept + m.stdout.slice(cut + 1);
  return taken;
}
