// `tsmesh tap`'s side of the tap stream: ask the control plane's admin port
// for GET /api/v1/tap (control/tap.ts) and print each event as it comes, one
// line per event in the manner of `linkerd viz tap`, or the events as JSON.
import type { TapEvent, TapRequestEvent } from '../contract/tap.js';
import { TAP_PATH } from './tap.js';

/** The control plane could not start the tap; the message says why and what to do. */
export class TapUnavailable extends Error {
  override name = 'TapUnavailable';
}

const HOW_TO_REACH =
  'is the control plane running and its admin port reachable there? tsmesh demo prints its control plane address: pass it as --admin-address HOST:PORT; ' +
  'in a cluster, run `kubectl -n tsmesh-system port-forward deploy/tsmesh-control-plane 15014` first.';

/**
 * Streams a tap: calls `onEvent` for each event until the control plane ends
 * the stream or `signal` aborts. `query` is the endpoint's query string.
 */
export async function streamTap(adminAddress: string, query: URLSearchParams, token: string | undefined, onEvent: (e: TapEvent) => void, signal?: AbortSignal): Promise<void> {
  const url = `http://${adminAddress}${TAP_PATH}?${query.toString()}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, ...(signal ? { signal } : {}) });
  } catch (e) {
    if (signal?.aborted) return;
    const err = e as Error & { cause?: Error };
    throw new TapUnavailable(`cannot reach the control plane at ${url} (${err.cause?.message ?? err.message}); ${HOW_TO_REACH}`);
  }
  if (!res.ok) {
    const text = (await res.text()).trim();
    if (res.status === 404 && !text.startsWith('no meshed proxy')) throw new TapUnavailable(`the control plane at ${adminAddress} serves no tap (${url}: 404): it is older than tap, or it is not a tsmesh control plane`);
    throw new TapUnavailable(`the control plane answered ${res.status}: ${text}`);
  }
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line) onEvent(JSON.parse(line) as TapEvent);
      }
    }
  } catch (e) {
    if (!signal?.aborted) throw e;
  }
}

/** Formats events as text lines; remembers each request's ends until its end event. */
export class TapFormatter {
  private readonly requests = new Map<string, TapRequestEvent>();

  line(e: TapEvent): string {
    if (e.type === 'status') return `# ${e.message}`;
    const req = e.type === 'req' ? e : this.requests.get(e.id);
    if (e.type === 'req') this.requests.set(e.id, e);
    if (e.type === 'end') this.requests.delete(e.id);
    const head = `${e.type} id=${e.id} proxy=${req?.direction === 'outbound' ? 'out' : 'in'} src=${req?.source || '-'} dst=${req?.destination || '-'}`;
    const headers = (h: Record<string, string>): string =>
      Object.entries(h)
        .map(([k, v]) => ` ${k}=${v}`)
        .join('');
    if (e.type === 'req') return `${head} :method=${e.method} :authority=${e.authority} :path=${e.path}${headers(e.headers)}`;
    if (e.type === 'rsp') return `${head} :status=${e.status} latency=${micros(e.latencyMs)}${headers(e.headers)}`;
    return `${head} duration=${micros(e.durationMs)} response-length=${e.responseBytes}B${e.grpcStatus !== undefined ? ` grpc-status=${e.grpcStatus}` : ''}${e.error ? ` error=${e.error}` : ''}`;
  }
}

const micros = (ms: number): string => `${Math.round(ms * 1000)}µs`;
