// Every command `tsmesh init` runs goes through an Executor: the system one
// runs it, the recording one only writes it down (tests), and the dry-run one
// runs the read-only commands (iptables-save) and records the rest.
import { spawn } from 'node:child_process';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Executor {
  /** Runs a command with optional standard input; never rejects for a non-zero exit. */
  run(command: string, args: readonly string[], input?: string): Promise<ExecResult>;
}

/** Exit code reported when the command does not exist (as a shell would). */
export const NOT_FOUND = 127;

export const systemExecutor: Executor = {
  run(command, args, input) {
    return new Promise((resolve) => {
      const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e: NodeJS.ErrnoException) => {
        resolve({ code: e.code === 'ENOENT' ? NOT_FOUND : 1, stdout: '', stderr: `${command}: ${e.message}` });
      });
      child.on('close', (code, signal) => {
        resolve({
          code: code ?? 128,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8') + (signal ? `${command}: killed by ${signal}` : ''),
        });
      });
      // A command that exits before reading its input closes the pipe early; that is its exit code's story.
      child.stdin.on('error', () => {});
      child.stdin.end(input ?? '');
    });
  },
};

export interface RecordedCall {
  readonly command: string;
  readonly args: readonly string[];
  readonly input?: string;
}

export type Responder = (command: string, args: readonly string[], input?: string) => ExecResult | undefined;

/** Records every call and answers from `respond` (default: success, no output). */
export class RecordingExecutor implements Executor {
  readonly calls: RecordedCall[] = [];
  constructor(private readonly respond: Responder = () => undefined) {}

  run(command: string, args: readonly string[], input?: string): Promise<ExecResult> {
    this.calls.push(input === undefined ? { command, args } : { command, args, input });
    return Promise.resolve(this.respond(command, args, input) ?? { code: 0, stdout: '', stderr: '' });
  }
}

/** Passes read-only commands (iptables-save and friends) to `inner`; records everything else without running it. */
export function dryRunExecutor(inner: Executor, recorder = new RecordingExecutor()): Executor & { readonly calls: RecordedCall[] } {
  return {
    calls: recorder.calls,
    run(command, args, input) {
      return command.endsWith('-save') ? inner.run(command, args, input) : recorder.run(command, args, input);
    },
  };
}
