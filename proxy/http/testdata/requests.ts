// Requests and responses for layer tests, without sockets.
import { Readable } from 'node:stream';
import type { RequestSignal } from '../cancel.js';
import { streamOf, type ProxyRequest, type ProxyResponse } from '../types.js';

export function testRequest(over: Partial<ProxyRequest> = {}): ProxyRequest {
  return {
    protocol: 'http1',
    method: 'GET',
    path: '/',
    headers: { host: 'api.shop' },
    body: null,
    startedAt: 0,
    signal: new AbortController().signal,
    ...over,
  };
}

export function testResponse(status: number, text = ''): ProxyResponse {
  return { status, headers: {}, body: text ? Readable.from([Buffer.from(text)]) : null, meta: {} };
}

export async function bodyText(res: ProxyResponse): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  for await (const c of streamOf(res.body)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

/** Runs virtual time until `p` settles: lets due callbacks run, then fires the next timer. */
export async function drive<T>(clock: { runNext(): number | undefined }, p: Promise<T>): Promise<T> {
  let done = false;
  const settled = p.finally(() => (done = true));
  settled.catch(() => undefined);
  for (let i = 0; i < 10_000 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done && clock.runNext() === undefined) await new Promise((r) => setImmediate(r));
  }
  return settled;
}

/** A handler answer that never comes: it fails when the request is aborted, as a real forward does. */
export function hang(signal: RequestSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new Error('aborted'));
    signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
  });
}
