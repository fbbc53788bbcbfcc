import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { bufferedBody, bufferOf, copyEndToEnd, emptyHeaders, endToEndHeaders, localResponse, streamOf } from './types.js';

describe('bodies in memory', () => {
  it('hand over their bytes until taken as a stream, which gives the same bytes once, with its end', async () => {
    const data = Buffer.from('hello');
    const body = bufferedBody(data);
    assert.ok(!(body instanceof Readable), 'a body in memory is not a stream');
    assert.equal(bufferOf(body), data);
    assert.equal(bufferOf(body), data, 'handing the bytes over leaves them there (a retry replays them)');
    const stream = streamOf(body);
    assert.equal(streamOf(body), stream, 'the same stream each time');
    assert.equal(bufferOf(body), undefined, 'once a stream has them, the bytes are its own');
    const chunks: Buffer[] = [];
    let ends = 0;
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => ends++);
    await new Promise((r) => stream.once('close', r));
    assert.equal(Buffer.concat(chunks).toString(), 'hello');
    assert.equal(ends, 1);
  });

  it('stream nothing once let go', async () => {
    const body = bufferedBody(Buffer.from('gone'));
    body.destroy();
    const stream = streamOf(body);
    assert.equal(stream.destroyed, true);
    const live = bufferedBody(Buffer.from('x'));
    const taken = streamOf(live);
    live.destroy(new Error('client left'));
    await new Promise((r) => setImmediate(r));
    assert.equal(taken.destroyed, true, 'letting go of the body destroys a stream already taken');
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

describe('end-to-end fields', () => {
  const head = (): Record<string, string | string[] | undefined> => {
    const h = emptyHeaders<Record<string, string | string[] | undefined>>();
    Object.assign(h, { ':status': '200', connection: 'keep-alive, X-Hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', upgrade: 'h2c', 'x-app': ['a', 'b'], gone: undefined });
    h['__proto__'] = 'data';
    return h;
  };

  it('leave out hop-by-hop fields and those Connection names, keep te: trailers and fields named like Object members', () => {
    const out = endToEndHeaders(head());
    assert.deepEqual({ ...out }, { ':status': '200', te: 'trailers', 'x-app': ['a', 'b'], ['__proto__']: 'data' });
    assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(out)), null, 'a header object that inherits nothing');
  });

  it('are copied into an outgoing HTTP/2 head without pseudo-headers, over what it holds', () => {
    const to = emptyHeaders<Record<string, string | string[] | undefined>>();
    to[':status'] = '204';
    copyEndToEnd(head(), to, true);
    assert.deepEqual({ ...to }, { ':status': '204', te: 'trailers', 'x-app': ['a', 'b'], ['__proto__']: 'data' });
    const noConnection = emptyHeaders<Record<string, string | string[] | undefined>>();
    copyEndToEnd({ 'x-hop': '1', te: 'gzip' }, noConnection, true);
    assert.deepEqual({ ...noConnection }, { 'x-hop': '1' }, 'without Connection, only the fixed hop-by-hop set goes');
  });
});
