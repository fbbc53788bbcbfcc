import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pump, sendBody } from './pipe.js';

/** A destination that takes one chunk at a time, each after a turn of the event loop. */
function slowSink(): { out: Writable; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      setImmediate(done);
    },
  });
  return { out, chunks };
}

describe('moving a body from stream to stream', () => {
  it('pump: everything in order, the source held back while the destination is full, then the end', async () => {
    const parts = Array.from({ length: 200 }, (_, i) => Buffer.from(`part ${i};`));
    const body = Readable.from(parts, { objectMode: false });
    const { out, chunks } = slowSink();
    let paused = 0;
    body.on('pause', () => paused++);
    pump(body, out);
    await new Promise((r) => out.once('finish', r));
    assert.equal(Buffer.concat(chunks).toString(), Buffer.concat(parts).toString());
    assert.ok(paused > 0, 'the body was paused while the destination was full');
  });

  it('pump: a destination that closes first takes no more writes, and nothing throws', async () => {
    const body = new PassThrough();
    const { out, chunks } = slowSink();
    const errors: Error[] = [];
    out.on('error', (e) => errors.push(e));
    pump(body, out);
    body.write('one');
    await new Promise((r) => setImmediate(r));
    out.destroy();
    await new Promise((r) => out.once('close', r));
    body.write('two');
    body.end('three');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(chunks.map(String), ['one']);
    assert.deepEqual(errors, [], 'no write after destroy');
  });

  it('pump: a body that had already ended ends the destination', async () => {
    const body = new PassThrough();
    body.end();
    body.resume();
    await new Promise((r) => body.once('end', r));
    const { out } = slowSink();
    pump(body, out);
    await new Promise((r) => out.once('finish', r));
  });

  it('sendBody: rejects and destroys both ends when the destination closes before the end', async () => {
    const body = new PassThrough();
    const { out } = slowSink();
    const sent = sendBody(body, out);
    body.write('part');
    out.destroy();
    await assert.rejects(sent, /closed the stream before the body was sent/);
    assert.ok(body.destroyed);
  });
});
