// The access log writer's default end: the stdout of the process it runs in,
// whole lines, those of one event-loop turn in one write. A child process
// writes through it; the test reads the child's stdout and stderr apart.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'access-log.ts');

describe('the access log writer', () => {
  it("writes its lines to the process's stdout, each whole, and nothing to stderr", async () => {
    const script = [
      `const { AccessLogWriter } = await import(${JSON.stringify(WRITER)});`,
      'const w = new AccessLogWriter();',
      'for (let i = 0; i < 3; i++) w.write(JSON.stringify({ n: i }));',
      'setTimeout(() => w.write(JSON.stringify({ n: 3 })), 10);',
    ].join('\n');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0, err);
    assert.equal(err, '');
    assert.equal(out, '{"n":0}\n{"n":1}\n{"n":2}\n{"n":3}\n');
  });
});
