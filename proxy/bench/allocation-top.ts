// Top allocating functions of a V8 sampling heap profile (.heapprofile, as
// grpc-cpu-sidecar.ts writes with the collected objects included):
//   tsx proxy/bench/allocation-top.ts FILE.heapprofile [N] [CALLS]
// With CALLS (the calls made while sampling), bytes per call too.
import { readFileSync } from 'node:fs';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

const [file, nText = '25', callsText] = process.argv.slice(2);
if (!file) {
  console.error('usage: allocation-top.ts FILE.heapprofile [N] [CALLS]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode };
const bySite = new Map<string, number>();
let total = 0;
const walk = (n: HeapNode, path: string[]): void => {
  const where = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules|work\/main)\//, '')}:${n.callFrame.lineNumber + 1}`;
  if (n.selfSize > 0) {
    const key = [where, ...path.slice(-2).reverse()].join(' < ');
    bySite.set(key, (bySite.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, [...path, where]);
};
walk(profile.head, []);
const calls = Number(callsText ?? 0);
console.log(`${(total / 1024).toFixed(0)} kB sampled${calls > 0 ? `, ${(total / calls / 1024).toFixed(1)} kB per call` : ''}`);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, Number(nText))) {
  console.log(`${((100 * bytes) / total).toFixed(1).padStart(5)}%  ${(bytes / 1024).toFixed(0).padStart(7)} kB  ${site}`);
}
