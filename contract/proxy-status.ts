// What the control plane says of the proxies on its discovery stream
// (GET /api/v1/proxies on its admin port, `tsmesh proxy-status`,
// `tsmesh proxy-config`), and the request field a proxy names its pod by.

/**
 * Whether a proxy runs the config last sent to it: SYNCED (it acknowledged
 * that version), STALE (it acknowledged an older one and not yet the last),
 * NOT ACKED (it acknowledged none on this stream; NOT SENT: there was no
 * config to send yet).
 */
export const SYNC_STATES = ['SYNCED', 'STALE', 'NOT ACKED', 'NOT SENT'] as const;
export type SyncState = (typeof SYNC_STATES)[number];

/** Sent by a proxy with GET /v1/config: its pod's name (TSMESH_POD_NAME), shown by proxy-status and matched by proxy-config. */
export const POD_NAME_HEADER = 'x-tsmesh-pod-name';

/**
 * Answered by the control plane with GET /v1/config: the address (host:port,
 * an IPv6 host in brackets) the stream's connection reached, that is this
 * replica's own. A proxy sends its acknowledgements there, verifying the
 * control plane by the name it dialled: through a Service of several
 * replicas, a new connection could reach another one, which would never
 * learn what this stream's proxy runs.
 */
export const ACK_ADDRESS_HEADER = 'x-tsmesh-ack-address';

/**
 * Sent by a proxy with GET /v1/config (value "1"): it reads deltas
 * (config-delta.ts). The control plane answers with the same header when it
 * will send them; a proxy without it gets a whole config every change.
 */
export const DELTAS_HEADER = 'x-tsmesh-config-deltas';
