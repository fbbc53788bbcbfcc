// Managed.line, which tests use to read what their processes print: a real
// child process writing one line in two pieces.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Managed } from './netns.js';

describe('Managed.line', () => {
  it('waits for a line\'s newline: a long line written in pieces is returned whole', async () => {
    // The first piece alone would pass the test; the line is only whole 300 ms later.
    const script = 'process.stdout.write(\'{"sent":\'); setTimeout(() => process.stdout.write(\'1}\\n\'), 300); setTimeout(() => undefined, 600);';
    const p = new Managed('piecewise', spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      const line = await p.line((l) => l.startsWith('{"sent":'), 5000);
      assert.deepEqual(JSON.parse(line), { sent: 1 });
    } finally {
      await p.stop();
    }
  });

  it('takes the last line without a newline once the process has ended its output', async () => {
    const p = new Managed('no-newline', spawn(process.execPath, ['-e', 'process.stdout.write("done")'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      assert.equal(await p.line((l) => l === 'done', 5000), 'done');
    } finally {
      await p.stop();
    }
  });

  it('gives up at once when the process ended without the line', async () => {
    const p = new Managed('silent', spawn(process.execPath, ['-e', 'console.log("other")'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const t0 = Date.now();
    await assert.rejects(p.line((l) => l === 'wanted', 10_000), /silent exited \(0\)/);
    assert.ok(Date.now() - t0 < 5000, 'it did not wait for the timeout');
  });
});
