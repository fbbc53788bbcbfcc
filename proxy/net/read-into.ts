// Socket reads into one buffer instead of a fresh 64 kB allocation per read
// (libuv's suggested size): net's `onread` option for the sockets the proxy
// opens (copiedReads), and readInto for the ones it is handed. Node hands no
// `onread` to the sockets net.Server accepts, nor to a TLSSocket made over
// one; readInto sets the same two fields that option sets, found by their
// symbols' names, and falls back to stream reads (returns false) on a Node
// where they are not found.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

const probe = Object.getOwnPropertySymbols(new Socket());
const kBuffer = probe.find((s) => s.description === 'kBuffer');
const kBufferCb = probe.find((s) => s.description === 'kBufferCb');

/** What a socket reading into a buffer needs: net's `onread` option, the buffer given once. */
export interface BufferReads {
  buffer: Uint8Array;
  /** Called with each read's length; false stops reading until resume(). */
  callback(n: number, buf: Uint8Array): boolean;
}

/**
 * The one buffer all the proxy's reading-into sockets share. Safe because
 * copiedReads copies each read out before anything else runs: a read's bytes
 * outlive it (a body, held pipelined bytes), and the next read, on any
 * socket, lands in the same place.
 */
const SHARED_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Reads into the shared buffer, each handed to `onData` as a copy of its bytes (from Node's pool for small reads). */
export function copiedReads(onData: (data: Buffer) => boolean): BufferReads {
  return { buffer: SHARED_BUFFER, callback: (n, buf) => onData(Buffer.from(buf.subarray(0, n))) };
}

interface StreamHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

/**
 * From now on every read of `socket` lands in `reads.buffer` and is handed to
 * `reads.callback` (its length, the buffer) instead of to 'data'; a callback that
 * returns false stops reading until resume(), and pause() stops it too, as
 * with `onread`. Bytes the stream read before stay in its buffer: read()
 * them. Returns false, changing nothing, for a stream that is not a socket
 * with a handle, a socket that already reads into a buffer, or a Node
 * without the fields.
 */
export function readInto(socket: Duplex, reads: BufferReads): boolean {
  if (kBuffer === undefined || kBufferCb === undefined || !(socket instanceof Socket)) return false;
  const fields = socket as unknown as Record<symbol, unknown> & { _handle?: StreamHandle | null };
  const handle = fields._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || fields[kBuffer] !== null) return false;
  handle.useUserBuffer(reads.buffer);
  fields[kBuffer] = reads.buffer;
  fields[kBufferCb] = reads.callback;
  return true;
}
