// What harness.ts hands worker.ts (a job, as JSON on its stdin) and what the
// worker hands back (one RESULT line): kept apart from the worker, which runs
// when it is loaded.
import type { AppRecord } from './app.js';
import type { Observation } from './client.js';
import type { FuzzCase } from './corpus.js';

/**
 * tsmesh's paths, started by the worker: a client-side sidecar's outbound
 * listener to a server-side sidecar over mTLS (what meshed callers get), and
 * a server-side sidecar's inbound listener taking plain text on a PERMISSIVE
 * port (what callers outside the mesh get).
 */
export const TSMESH = 'tsmesh';
export const TSMESH_INBOUND = 'tsmesh-in';
export const TSMESH_PATHS: readonly string[] = [TSMESH, TSMESH_INBOUND];

/**
 * One proxy's path to one listener of the app. A proxy has several lanes,
 * each with its own port and upstream connections, so that cases run side by
 * side without sharing a connection: a lane takes its proxy's next case when
 * it falls free, one case at a time.
 */
export interface Lane {
  readonly proxy: string;
  /** The proxy's port; the worker's own tsmesh lanes have none (it starts that proxy). */
  readonly port?: number;
  readonly appPort: number;
}

/** How the app names a lane in its records. */
export const laneName = (lane: Lane): string => `${lane.proxy}:${lane.appPort}`;

export interface Job {
  readonly cases: readonly FuzzCase[];
  readonly lanes: readonly Lane[];
  readonly boundMs: number;
  readonly quietMs: number;
}

export interface LaneResult {
  readonly observations: Observation[];
  /** The canary request sent after each case, on a new connection: its answer must be its own. */
  readonly canaries: Observation[];
}

export interface WorkerResult {
  /** By proxy, each case's observations in the order of the job's cases. */
  readonly proxies: Record<string, LaneResult>;
  readonly records: readonly AppRecord[];
}

/** The canary after a case: a plain request whose answer must be its own (no response left over from the case). */
export const canaryFor = (m: string): string => `GET /${m}/canary HTTP/1.1\r\nhost: app.fuzz\r\nconnection: close\r\n\r\n`;
