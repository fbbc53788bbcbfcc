import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { issueCredentials } from '../testdata/mesh.js';
import { readInto } from './read-into.js';

/** What readInto's callback got, as one string, with a way to wait for more. */
class Reads {
  text = '';
  calls = 0;
  readonly buffer = Buffer.alloc(16);
  readonly callback = (n: number, buf: Uint8Array): boolean => {
    assert.equal(buf, this.buffer, 'reads land in the caller buffer');
    this.calls++;
    this.text += Buffer.from(buf.subarray(0, n)).toString('latin1');
    return true;
  };

  async until(text: string): Promise<void> {
    for (let i = 0; i < 200 && this.text !== text; i++) await sleep(10);
    assert.equal(this.text, text);
  }
}

async function listening(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

describe('readInto (reads of accepted sockets into one buffer)', function () {
  const cleanup: (() => void)[] = [];
  afterEach(function () {
    for (const fn of cleanup.splice(0)) fn();
  });

  async function acceptedPair(): Promise<{ client: Socket; accepted: Socket }> {
    const server = createServer({ allowHalfOpen: true });
    const port = await listening(server);
    const client = connect(port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [Socket];
    cleanup.push(() => {
      client.destroy();
      accepted.destroy();
      server.close();
    });
    return { client, accepted };
  }

  it('hands every read of a socket net.Server accepted to the callback, in pieces no larger than the buffer, and none to data', async function () {
    const { client, accepted } = await acceptedPair();
    const reads = new Reads();
    assert.equal(readInto(accepted, reads), true);
    accepted.on('data', () => assert.fail('a read went to the stream'));
    const sent = 'x'.repeat(100);
    client.write(sent);
    await reads.until(sent);
    assert.ok(reads.calls >= Math.ceil(sent.length / reads.buffer.length), `${reads.calls} reads of at most 16 bytes`);
  });

  it('stops reading while the socket is paused, and ends with the peer', async function () {
    const { client, accepted } = await acceptedPair();
    const reads = new Reads();
    assert.ok(readInto(accepted, reads));
    accepted.pause();
    client.write('held');
    await sleep(100);
    assert.equal(reads.text, '', 'a paused socket read nothing');
    accepted.resume();
    await reads.until('held');
    const ended = once(accepted, 'end');
    client.end();
    await ended;
  });

  it('reads the clear text of a TLS server socket made over an accepted socket', async function () {
    const { ca } = await newRootCa();
    const creds = issueCredentials(ca, 'spiffe://cluster.local/ns/default/sa/api');
    const tlsServer = createTlsServer({ key: creds.keyPem, cert: creds.certChainPem });
    const server = createServer((raw) => tlsServer.emit('connection', raw));
    const port = await listening(server);
    const client = tlsConnect({ port, host: '127.0.0.1', ca: creds.trustBundlePem, checkServerIdentity: () => undefined });
    const [tls] = (await once(tlsServer, 'secureConnection')) as [TLSSocket];
    cleanup.push(() => {
      client.destroy();
      tls.destroy();
      server.close();
    });
    const reads = new Reads();
    assert.equal(readInto(tls, reads), true);
    client.write('over tls');
    await reads.until('over tls');
  });

  it('declines a stream that is not a socket, and a socket already reading into a buffer', async function () {
    const reads = new Reads();
    assert.equal(readInto(new PassThrough(), reads), false);
    const { accepted } = await acceptedPair();
    assert.ok(readInto(accepted, reads));
    assert.equal(readInto(accepted, { buffer: Buffer.alloc(8), callback: reads.callback }), false);
  });
});
