// Structured output of the commands that print what the control plane answered (-o json|yaml).
import { stringify } from 'yaml';

/** Writes `value` as indented JSON or as YAML, to stdout. */
export function printStructured(value: unknown, output: 'json' | 'yaml'): void {
  process.stdout.write(output === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value, { lineWidth: 0 }));
}
