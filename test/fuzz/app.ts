// The recording app behind every proxy of the differential fuzzer: a raw
// node:net server that reads requests as a typical backend does (wire.ts),
// keeps the exact bytes and the boundary of each request it received, and
// answers each with a response naming its sequence number (x-fuzz-seq), so
// the client can tell the app's answers from a proxy's own. For a response
// case it answers with the case's malformed bytes instead. One listener per
// proxy ("lane"), so each proxy's traffic is recorded apart.
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { MARKER_IN_TARGET, PIECE_GAP_MS, type ResponseCase } from './corpus.js';
import { fieldValue, readRequest, type Field } from './wire.js';

/** Characters of a head or body kept in a record; the lengths are kept whole. */
const KEEP = 4096;

/** One request the app received, or what it could not read. */
export interface AppRecord {
  /** The proxy whose lane (job.ts) the request came in on, and the lane. */
  readonly proxy: string;
  readonly lane: string;
  /** The upstream connection (per lane), and the request's place on it. */
  readonly conn: number;
  readonly onConn: number;
  /** The app's sequence number (what x-fuzz-seq carried back), unique in the run. */
  readonly seq: number;
  /** The marker found in the head, if any. */
  readonly marker: string | undefined;
  /** The marker of the case the lane was running when the request arrived. */
  readonly during: string | undefined;
  readonly method: string;
  readonly target: string;
  readonly version: string;
  readonly fields: readonly Field[];
  readonly body: string;
  readonly bodyLength: number;
  readonly chunked: boolean;
  readonly trailers: readonly Field[];
  /** Set when the bytes did not read as a request: what was wrong. The app answered 400 and closed. */
  readonly error?: string;
  /** The head as received (cut to 4 KiB). */
  readonly raw: string;
}

const cut = (s: string): string => (s.length > KEEP ? s.slice(0, KEEP) : s);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class RecordingApp {
  readonly records: AppRecord[] = [];
  /** The marker of the case each lane runs now. */
  readonly current = new Map<string, string | undefined>();
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  /** One sequence for every lane: a number names one request of the run. */
  private seq = 0;
  private readonly conns = new Map<string, number>();

  /** `responses`: the response cases by marker; a request carrying one gets the case's answer. */
  constructor(private readonly responses: ReadonlyMap<string, ResponseCase>) {}

  /** Requests read, by lane and marker (canaries aside). */
  private readonly counts = new Map<string, number>();

  /** How many requests carrying `marker` (canaries aside) the app has read on `lane`: answers the client may still be waiting for. */
  received(lane: string, marker: string | undefined): number {
    return this.counts.get(`${lane} ${marker}`) ?? 0;
  }

  private record(r: AppRecord): void {
    this.records.push(r);
    if (r.error === undefined && !r.target.endsWith('/canary')) this.counts.set(`${r.lane} ${r.marker}`, this.received(r.lane, r.marker) + 1);
  }

  async listen(proxy: string, lane: string, port: number): Promise<void> {
    const server = createServer({ allowHalfOpen: false, noDelay: true }, (socket) => this.serve(proxy, lane, socket));
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.servers.push(server);
  }

  private serve(proxy: string, lane: string, socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const conn = (this.conns.get(lane) ?? 0) + 1;
    this.conns.set(lane, conn);
    let buffer = '';
    let onConn = 0;
    let busy = false;
    let closing = false;
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (!closing && !socket.destroyed) {
          const r = readRequest(buffer);
          if (r.kind === 'more') break;
          const seq = ++this.seq;
          const during = this.current.get(lane);
          if (r.kind === 'error') {
            const m = MARKER_IN_TARGET.exec(buffer.slice(0, KEEP))?.[0];
            this.record({ proxy, lane, conn, onConn: onConn++, seq, marker: m, during, method: '', target: '', version: '', fields: [], body: '', bodyLength: 0, chunked: false, trailers: [], error: r.error, raw: cut(buffer) });
            closing = true;
            socket.end(`HTTP/1.1 400 Bad Request\r\nx-fuzz-app-error: ${r.error.replace(/[^\x20-\x7e]/g, '?')}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`, 'latin1');
            break;
          }
          const q = r.message;
          buffer = buffer.slice(q.length);
          const m = MARKER_IN_TARGET.exec(q.head.slice(0, KEEP))?.[0];
          this.record({
            proxy,
            lane,
            conn,
            onConn: onConn++,
            seq,
            marker: m,
            during,
            method: q.method,
            target: q.target,
            version: q.version,
            fields: q.fields.map(([n, v]) => [cut(n), cut(v)] as const),
            body: cut(q.body),
            bodyLength: q.body.length,
            chunked: q.chunked,
            trailers: q.trailers,
            raw: cut(q.head),
          });
          const response = m === undefined || q.target.endsWith('/canary') ? undefined : this.responses.get(m);
          if (response) {
            await this.answerWith(socket, response);
            if (response.close) closing = true;
            continue;
          }
          const connection = (fieldValue(q.fields, 'connection') ?? '').toLowerCase();
          // A canary never closes the proxy's upstream connection: the next case may find what it left there.
          const close = !q.target.endsWith('/canary') && (connection.includes('close') || (q.version === 'HTTP/1.0' && !connection.includes('keep-alive')));
          const body = `seq ${seq}`;
          socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-fuzz-seq: ${seq}\r\ncontent-length: ${body.length}\r\n${close ? 'connection: close\r\n' : ''}\r\n${body}`, 'latin1');
          if (close) {
            closing = true;
            socket.end();
          }
        }
      } finally {
        busy = false;
      }
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      if (closing) return;
      buffer += d;
      void pump();
    });
  }

  private async answerWith(socket: Socket, c: ResponseCase): Promise<void> {
    if (c.split) {
      for (const piece of c.reply) {
        if (socket.destroyed) return;
        socket.write(piece, 'latin1');
        await sleep(PIECE_GAP_MS);
      }
    } else if (c.reply.length > 0) socket.write(c.reply.join(''), 'latin1');
    if (c.close) socket.end();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}
