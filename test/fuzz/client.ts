// The fuzzer's client: writes a case's bytes to a proxy (at once or in
// pieces) and keeps everything that comes back, until the proxy closes the
// connection, falls quiet after complete answers, or the case's bound runs
// out. What the bytes mean is decided later (verdict.ts), from the same
// reading of responses (wire.ts).
import { connect } from 'node:net';
import { PIECE_GAP_MS } from './corpus.js';
import { readResponse, type ResponseMessage } from './wire.js';

/** How a client connection ended: the proxy closed it, it fell quiet after complete answers, or the bound ran out. */
export type End = 'closed' | 'idle' | 'bound';

export interface Observation {
  /** What the proxy sent, as latin1 (cut to 64 KiB). */
  readonly received: string;
  readonly end: End;
  /** From the connection to the end. */
  readonly ms: number;
  /** Set when the connection itself failed (refused, reset before anything came). */
  readonly error?: string;
}

const KEEP = 64 * 1024;

/** Every response in `text`, in order, and whether an unfinished one (or unreadable bytes) follows. */
export function readResponses(text: string, closed: boolean): { responses: ResponseMessage[]; rest: string; error: string | undefined } {
  const responses: ResponseMessage[] = [];
  let rest = text;
  while (rest.length > 0) {
    const r = readResponse(rest, 'GET', closed);
    if (r.kind === 'more') break;
    if (r.kind === 'error') return { responses, rest, error: r.error };
    responses.push(r.message);
    rest = rest.slice(r.message.length);
    // After a 101 the bytes are the new protocol's.
    if (r.message.status === 101) return { responses, rest: '', error: undefined };
  }
  return { responses, rest, error: undefined };
}

/** Splits `bytes` into `pieces` parts of about one size. */
export function piecesOf(bytes: string, pieces: number): string[] {
  if (pieces <= 1 || bytes.length <= 1) return [bytes];
  const n = Math.min(pieces, bytes.length);
  const size = Math.ceil(bytes.length / n);
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

/** Once as many answers came as requests were sent, this much silence ends a case. */
const QUIET_WHEN_ANSWERED_MS = 30;

/**
 * Sends `bytes` to 127.0.0.1:`port` and observes the answer. `expect`: how
 * many requests the bytes hold as wire.ts reads them; once that many final
 * answers came, a short silence ends the case, else `quietMs` of it.
 * `atApp`: how many of the case's requests the app has received; while fewer
 * answers came, the client waits on (to the bound), so that an answer on its
 * way is not taken for one lost.
 */
export function exchange(port: number, bytes: string, options: { pieces?: number; expect?: number; atApp?: () => number; boundMs: number; quietMs: number }): Promise<Observation> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let received = '';
    let lastData = Date.now();
    let written = false;
    let closed = false;
    let error: string | undefined;
    let done = false;
    const finish = (end: End): void => {
      if (done) return;
      done = true;
      clearInterval(tick);
      socket.destroy();
      resolve({ received: received.length > KEEP ? received.slice(0, KEEP) : received, end, ms: Date.now() - started, ...(error === undefined ? {} : { error }) });
    };
    /** The silence that ends the case now: none while an answer is unfinished or none came. */
    const quiet = (): number => {
      const r = readResponses(received, false);
      if (r.error !== undefined || r.rest !== '') return Infinity;
      const finals = r.responses.filter((m) => m.status >= 200 || m.status === 101).length;
      if (finals === 0 || finals < (options.atApp?.() ?? 0)) return Infinity;
      return finals >= (options.expect ?? 1) ? QUIET_WHEN_ANSWERED_MS : options.quietMs;
    };
    const tick = setInterval(() => {
      const now = Date.now();
      if (closed) finish('closed');
      else if (written && now - lastData >= quiet()) finish('idle');
      else if (now - started >= options.boundMs) finish('bound');
    }, 10);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      received += d;
      lastData = Date.now();
    });
    socket.on('error', (e) => {
      if (received === '') error = e.message;
    });
    socket.on('close', () => {
      closed = true;
      finish('closed');
    });
    socket.once('connect', async () => {
      const parts = piecesOf(bytes, options.pieces ?? 1);
      for (const [i, part] of parts.entries()) {
        if (socket.destroyed) return;
        if (i > 0) await new Promise((r) => setTimeout(r, PIECE_GAP_MS));
        socket.write(part, 'latin1');
      }
      lastData = Date.now();
      written = true;
    });
  });
}
