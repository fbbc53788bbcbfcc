// Cancellation of a request as its layers see it: `req.signal`. The client's
// side makes one Cancellation per connection (HTTP/1.1) or stream (HTTP/2)
// and aborts it when the client goes away; layers that cancel on their own
// (the route timeout, the per-try timeout) derive one from it. An AbortSignal
// would serve, but Node 20 charges about 4.6 us for the first listener on a
// fresh AbortSignal (it registers the signal for AbortSignal.any) and runs
// every add and remove through EventTarget's checks; a Cancellation keeps its
// listeners in an array, at about a hundredth of that, and the request path
// adds and removes one per layer per request.
import type { ProxyRequest } from './types.js';

/** The part of AbortSignal the proxy uses; an AbortSignal is one. */
export interface RequestSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A signal aborted by abort() or when its parent, if it has one, is. Listeners run once, in order. */
export class Cancellation implements RequestSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;
  private readonly onParent = (): void => this.abort(this.parent?.reason);

  constructor(private readonly parent?: RequestSignal) {
    if (!parent) return;
    if (parent.aborted) {
      this.aborted = true;
      this.reason = parent.reason;
    } else parent.addEventListener('abort', this.onParent, { once: true });
  }

  abort(reason: unknown = new Error('the request was cancelled')): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.parent?.removeEventListener('abort', this.onParent);
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const l of listeners) l();
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const ls = this.listeners;
    if (!ls) return;
    const i = ls.lastIndexOf(listener);
    if (i !== -1) ls.splice(i, 1);
  }

  /** The request is over: stop listening to the parent (which may live on, e.g. a keep-alive connection's). */
  dispose(): void {
    this.parent?.removeEventListener('abort', this.onParent);
    this.listeners = undefined;
  }
}

/** `req` with a derived signal of its own. */
export function withCancellation(req: ProxyRequest): { req: ProxyRequest; cancel: Cancellation } {
  const cancel = new Cancellation(req.signal);
  return { req: { ...req, signal: cancel }, cancel };
}
