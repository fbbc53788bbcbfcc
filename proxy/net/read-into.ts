// Reads an accepted socket through a caller's buffer (what net's `onread`
// option does for sockets the caller creates). Node hands no `onread` to the
// sockets net.Server accepts, nor to a TLSSocket made over one; this sets the
// same two fields that option sets, found by their symbols' names, and falls
// back to stream reads (returns false) on a Node where they are not found.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

const probe = Object.getOwnPropertySymbols(new Socket());
const kBuffer = probe.find((s) => s.description === 'kBuffer');
const kBufferCb = probe.find((s) => s.description === 'kBufferCb');

interface StreamHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

/**
 * From now on every read of `socket` lands in `buffer` and is handed to
 * `callback` (its length, the buffer) instead of to 'data'; a callback that
 * returns false stops reading until resume(), and pause() stops it too, as
 * with `onread`. Bytes the stream read before stay in its buffer: read()
 * them. Returns false, changing nothing, for a stream that is not a socket
 * with a handle, a socket that already reads into a buffer, or a Node
 * without the fields.
 */
export function readInto(socket: Duplex, buffer: Uint8Array, callback: (n: number, buf: Uint8Array) => boolean): boolean {
  if (kBuffer === undefined || kBufferCb === undefined || !(socket instanceof Socket)) return false;
  const fields = socket as unknown as Record<symbol, unknown> & { _handle?: StreamHandle | null };
  const handle = fields._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || fields[kBuffer] !== null) return false;
  handle.useUserBuffer(buffer);
  fields[kBuffer] = buffer;
  fields[kBufferCb] = callback;
  return true;
}
