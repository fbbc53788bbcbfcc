// Tap (`tsmesh tap`): what the control plane asks of a proxy on a tsmesh/tap
// connection, and the events that come back, which the control plane passes
// on to its client as they are, with the proxy that saw them
// (contract/DESIGN.md, Tap).

import { CONTROL_PLANE_NAME, MESH_NAMESPACE } from './names.js';
import { workloadSpiffeId } from './spiffe.js';

/** The ALPN of the control plane's tap connections to a proxy's inbound port. */
export const TAP_ALPN = 'tsmesh/tap';

/** The one identity a proxy serves tap to: the control plane's (its ServiceAccount). */
export function tapCallerIdentity(trustDomain: string): string {
  return workloadSpiffeId(trustDomain, MESH_NAMESPACE, CONTROL_PLANE_NAME);
}

/** Events a second each proxy sends a tap, unless it asks for another bound. */
export const TAP_DEFAULT_MAX_RPS = 100;
export const TAP_MAX_MAX_RPS = 1000;

/** A header's value as a tap without showHeaders sees it. */
export const TAP_REDACTED = '<redacted>';

/** The line the control plane writes first on a tap connection, as JSON. */
export interface TapFilter {
  direction?: 'inbound' | 'outbound';
  /** A path prefix. */
  path?: string;
  method?: string;
  /** A response code (100-599), or its class (1-5 for 1xx-5xx). */
  status?: number;
  /** A SPIFFE ID, the caller's or the callee's. */
  identity?: string;
  /** Only the proxy of this pod serves the tap; the others end it at once. */
  pod?: string;
  maxRps: number;
  /** Header values, not only their names. */
  showHeaders: boolean;
}

/** The sidecar that saw an event, as the control plane names it. */
export interface TapProxy {
  namespace: string;
  workload: string;
  address: string;
}

interface TapEventBase {
  /** Unique in one stream: the proxy's address, then the proxy's own count. */
  id: string;
  proxy?: TapProxy;
}

export interface TapRequestEvent extends TapEventBase {
  type: 'req';
  direction: 'inbound' | 'outbound';
  source: string;
  destination: string;
  method: string;
  authority: string;
  path: string;
  headers: Record<string, string>;
}

export interface TapResponseEvent extends TapEventBase {
  type: 'rsp';
  status: number;
  latencyMs: number;
  headers: Record<string, string>;
}

export interface TapEndEvent extends TapEventBase {
  type: 'end';
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
  grpcStatus?: number;
  error?: string;
}

/** From the control plane: how many proxies the tap reaches, and what happened to one. */
export interface TapStatusEvent {
  type: 'status';
  proxies: number;
  message: string;
}

export type TapEvent = TapRequestEvent | TapResponseEvent | TapEndEvent | TapStatusEvent;
