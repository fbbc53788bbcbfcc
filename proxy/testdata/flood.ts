// Floods for tests: proxy/testdata/flood-client.ts started as a process of
// its own (so it shares no event loop with the proxy under test), and the
// probe kubelet would make meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

const CLIENT = fileURLToPath(new URL('./flood-client.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** kubelet's default probe timeout. */
export const PROBE_TIMEOUT_MS = 1000;

/** A probe as kubelet makes it: the status line, and how long the answer took (the timeout when none came). */
export function probe(port: number, path: string, host = '127.0.0.1'): Promise<{ status: string; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const s = connect(port, host);
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('error', () => undefined);
    s.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nuser-agent: kube-probe/1.33\r\nconnection: close\r\n\r\n`);
    const timer = setTimeout(() => s.destroy(), PROBE_TIMEOUT_MS);
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ status: answer.split('\r\n')[0] || 'no answer', ms: performance.now() - started });
    });
  });
}

/** Starts proxy/testdata/flood-client.ts against `port`; resolves once it has made all its connections. */
export async function startFlood(port: number, count: number, mode: string, opts: { host?: string; from?: string; once?: boolean } = {}): Promise<ChildProcess> {
  const flags = [...(opts.from ? ['--from', opts.from] : []), ...(opts.once ? ['--once'] : [])];
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, opts.host ?? '127.0.0.1', String(port), String(count), mode, ...flags], {
    cwd: REPO,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.stdin!.on('error', () => undefined);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the flood did not open ${count} connections in 30 s: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('open')) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the flood exited (${code}) before it opened its connections: ${out}`));
    });
  });
  return child;
}

/** Ends the flood (its connections with it) and waits for it to exit; kills it by PID if it does not. */
export async function stopFlood(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
