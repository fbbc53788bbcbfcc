import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { bufferedBody, bufferOf, localResponse } from './types.js';

describe('bodies in memory', () => {
  it('hand over their bytes while unread, and stream the same bytes', async () => {
    const data = Buffer.from('hello');
    assert.equal(bufferOf(bufferedBody(data)), data);
    const read = bufferedBody(data);
    const chunks: Buffer[] = [];
    for await (const c of read) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'hello');
    assert.equal(bufferOf(read), undefined, 'a body already read is not handed over again');
  });

  it('put nothing in the stream until it is read, then all of it once, with its end', async () => {
    const data = Buffer.from('lazy');
    const body = bufferedBody(data);
    await new Promise((r) => setImmediate(r));
    assert.equal(body.readableLength, 0, 'bytes pushed before anyone read');
    assert.equal(bufferOf(body), data);
    // Read as a stream (a pipe, an h2 write): the bytes come once, then the end.
    const chunks: Buffer[] = [];
    body.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((r) => body.once('end', r));
    assert.equal(Buffer.concat(chunks).toString(), 'lazy');
    assert.equal(bufferOf(body), undefined);
    // A reader that starts and pauses with the bytes still buffered: they are still handed over whole.
    const paused = bufferedBody(data);
    paused.read(0);
    await new Promise((r) => setImmediate(r));
    assert.equal(paused.readableLength, data.length);
    assert.equal(bufferOf(paused), data);
  });

  it('are never taken from an ordinary stream', () => {
    assert.equal(bufferOf(Readable.from([Buffer.from('x')])), undefined);
    assert.equal(bufferOf(null), undefined);
  });

  it('survive being destroyed with an error nobody listens for (a client that left)', async () => {
    const body = bufferedBody(Buffer.from('x'));
    body.destroy(new Error('client left'));
    await new Promise((r) => setImmediate(r));
    assert.equal(body.destroyed, true);
  });

  it('make local responses with their length', () => {
    const res = localResponse(503, 'no-endpoints', 'tsmesh: api.shop has no ready endpoints');
    assert.equal(res.headers['content-length'], String('tsmesh: api.shop has no ready endpoints\n'.length));
    assert.equal(res.headers['x-tsmesh-error'], 'no-endpoints');
  });
});
