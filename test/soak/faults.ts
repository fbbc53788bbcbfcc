// The faults of the soak's phases, each done to the running mesh at the
// start of its phase and undone at its end: an api replica that hangs,
// fails, slows down, resets or restarts, the control plane's outage with a
// change made meanwhile, and floods of idle connections. The replica is
// always api1: one bad replica of three, behind retries and a breaker.
import type { Managed, RunAs } from '../../lib/netns.js';
import type { MeshDocument, StreamLab } from '../netns/stream-lab.js';
import { sleep } from '../netns/mesh-lab.js';

/** What a fault gets: the lab, its phase's start and length, and where it reports. */
export interface FaultContext {
  lab: StreamLab;
  startedAt: number;
  ms: number;
  note(text: string): void;
  /** A criterion of the fault's own failed (a change that never arrived). */
  fail(text: string): void;
}

export interface Fault {
  /** Run at the phase's start; may go on (a restart), awaited at the phase's end. */
  inject(ctx: FaultContext): Promise<void>;
  /** Run at the phase's end, after inject has finished. */
  revert?(ctx: FaultContext): Promise<void>;
}

export const BAD_REPLICA = 'api1';
const FLOOD_CONNECTIONS = 1000;

/** A mode of the bad replica's app (a line on mesh-app.ts's stdin) for the phase. */
export function appMode(on: object, off: object): Fault {
  return {
    inject: async ({ lab }) => {
      await lab.controlApp(BAD_REPLICA, on);
    },
    revert: async ({ lab }) => {
      await lab.controlApp(BAD_REPLICA, off);
    },
  };
}

/** The app stops answering; at the end, what it still holds shows whether the mesh let go of abandoned requests. */
export function hang(): Fault {
  return {
    ...appMode({ hang: true }, { hang: false }),
    revert: async ({ lab, note }) => {
      const s = await lab.controlApp(BAD_REPLICA, { stats: true });
      note(`${BAD_REPLICA}'s hung app held ${s.held} requests on ${s.connections} connections at the end`);
      await lab.controlApp(BAD_REPLICA, { hang: false });
    },
  };
}

/** The bad replica's app is killed by PID 2 s into the phase and started again `downMs` later. */
export function appRestart(downMs: number): Fault {
  return {
    inject: async ({ lab, note }) => {
      await sleep(2000);
      const t0 = Date.now();
      await lab.restartApp(BAD_REPLICA, downMs);
      note(`${BAD_REPLICA}'s app killed at +2 s, serving again ${((Date.now() - t0) / 1000).toFixed(1)} s later`);
    },
  };
}

/**
 * The control plane is killed at the start (SIGKILL: no goodbye to the
 * proxies), the mesh file changed 2 s later with `changed` (a service
 * added), and the control plane started again halfway through the phase;
 * web's proxy must have the change within 15 s of the control plane's return.
 */
export function controlPlaneRestart(changed: (lab: StreamLab) => MeshDocument, arrived: (lab: StreamLab) => Promise<number>): Fault {
  return {
    inject: async ({ lab, startedAt, ms, note, fail }) => {
      await lab.killControlPlane();
      const killedAt = Date.now();
      await sleep(2000);
      await lab.writeMesh(changed(lab));
      await sleep(startedAt + ms / 2 - Date.now());
      const startAt = Date.now();
      await lab.startControlPlane();
      const readyAt = Date.now();
      note(`control plane down ${((readyAt - killedAt) / 1000).toFixed(1)} s (${((readyAt - startAt) / 1000).toFixed(1)} s of it starting again); mesh changed while down`);
      try {
        note(`web's proxy had the change ${await arrived(lab)} ms after the control plane was ready`);
      } catch (e) {
        fail(`the change made while the control plane was down did not reach web: ${(e as Error).message}`);
      }
    },
  };
}

/**
 * FLOOD_CONNECTIONS idle TCP connections from a pod (as `as`) to `target`,
 * held through the phase and closed at its end. `stats` names apps whose
 * open connections are noted before the close (where the flood went on to).
 */
export function flood(from: string, as: RunAs, target: (lab: StreamLab) => { host: string; port: number; label: string }, stats: readonly string[] = []): Fault {
  let holder: Managed | undefined;
  return {
    inject: async ({ lab, ms, note }) => {
      const { host, port, label } = target(lab);
      const t0 = Date.now();
      holder = lab.spawnIn(`flood-${from}`, from, [process.execPath, '--import', 'tsx', 'test/soak/flood.ts', host, String(port), String(FLOOD_CONNECTIONS)], as);
      const opened = JSON.parse(await holder.line((l) => l.startsWith('{"open"'), ms)) as { open: number; failed: number };
      note(`${opened.open} idle connections from ${from} to ${label} held ${((Date.now() - t0) / 1000).toFixed(1)} s after the start (${opened.failed} failed to open)`);
    },
    revert: async ({ lab, note }) => {
      if (holder === undefined) return;
      if (stats.length > 0) {
        const acks = await Promise.all(stats.map((pod) => lab.controlApp(pod, { stats: true })));
        note(`apps ${stats.join(', ')} had ${acks.map((a) => a.connections).join(', ')} connections open before the close`);
      }
      holder.child.stdin!.write('close\n');
      const line = await holder.line((l) => l.startsWith('{"closedByPeer"'), 5000).catch(() => undefined);
      if (line !== undefined) note(`${(JSON.parse(line) as { closedByPeer: number }).closedByPeer} of them closed by the other end while held`);
      await holder.stop();
      holder = undefined;
    },
  };
}
