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
