// Leader election over a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection package does it: every replica tries to take or renew the
// Lease every retryPeriod; the holder renews it, and stops leading when it
// cannot renew for renewDeadline; the others take it once it has not been
// renewed for leaseDuration. Expiry is measured on this replica's own clock
// from when it last saw the Lease change, so clock skew between nodes does
// not matter. On close the leader releases the Lease (empty holder), so a
// rolling update hands over at once instead of after leaseDuration.
//
// Every replica serves the CA, the webhook and discovery; only the leader
// writes to the API (trust-bundle ConfigMaps, policy status, the webhook's
// caBundle), so two replicas never fight over an object.
//
// RBAC (manifests/control-plane.yaml, Role in tsmesh-system): get and update
// on Lease tsmesh-control-plane, create on leases.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { CONTROL_PLANE_NAME } from '../contract/names.js';


export interface LeaderElectionOptions {
  kc: KubeConfig;
  namespace: string;
  /** Lease name (default tsmesh-control-plane). */
  name?: string;
  /** This replica: its pod name (the hostname in Kubernetes). */
  identity: string;
  log: Logger;
  /** Called when this replica becomes the leader. */
  onStartedLeading: () => void;
  /** Called when it stops (could not renew in time, or close()). */
  onStoppedLeading: () => void;
  /** Called when the holder seen changes ('' when nobody holds it). */
  onNewLeader?: (identity: string) => void;
  /** Default 15 s (client-go's default). */
  leaseDurationSeconds?: number;
  /** Default 10 s. Must be shorter than leaseDuration. */
  renewDeadlineMs?: number;
  /** Default 2 s. */
  retryPeriodMs?: number;
  /** Local clock (tests). */
  now?: () => number;
}

export interface LeaderElection {
  isLeader(): boolean;
  /** The holder last seen ('' when none). */
  leader(): string;
  /** Stops; a leader releases the Lease first. */
  close(): Promise<void>;
}

/** A MicroTime as the API server parses it (RFC 3339 with exactly six fractional digits). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

const statusOf = (e: unknown): number | undefined => (e as { code?: unknown }).code as number | undefined;

export function startLeaderElection(opts: LeaderElectionOptions): LeaderElection {
  const api = opts.kc.makeApiClient(CoordinationV1Api);
  const name = opts.name ?? CONTROL_PLANE_NAME;
  const { namespace, identity, log } = opts;
  const durationS = opts.leaseDurationSeconds ?? 15;
  const renewDeadline = opts.renewDeadlineMs ?? 10_000;
  const retry = opts.retryPeriodMs ?? 2000;
  if (renewDeadline >= durationS * 1000) throw new Error(`renewDeadline (${renewDeadline} ms) must be shorter than leaseDuration (${durationS} s)`);
  const now = opts.now ?? Date.now;

  let leading = false;
  let holder = '';
  let lastRenew = 0;
  /** The Lease as last seen, and when (local clock): expiry is judged from here. */
  let observed: { key: string; at: number } | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const setHolder = (h: string): void => {
    if (h === holder) return;
    holder = h;
    opts.onNewLeader?.(h);
  };
  const stopLeading = (why: string): void => {
    if (!leading) return;
    leading = false;
    log.warn('stopped leading', { lease: `${namespace}/${name}`, identity, why });
    opts.onStoppedLeading();
  };

  /** One attempt; true when this replica holds the Lease afterwards. */
  const tryAcquireOrRenew = async (): Promise<boolean> => {
    const t = now();
    const spec = (acquire: boolean, lease?: V1Lease) => ({
      holderIdentity: identity,
      leaseDurationSeconds: durationS,
      acquireTime: (acquire ? microTime(t) : (lease?.spec?.acquireTime ?? microTime(t))) as unknown as Date,
      renewTime: microTime(t) as unknown as Date,
      leaseTransitions: (lease?.spec?.leaseTransitions ?? 0) + (acquire && lease ? 1 : 0),
    });
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
      await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: spec(true) } });
      observed = undefined;
      setHolder(identity);
      return true;
    }
    const current = lease.spec?.holderIdentity ?? '';
    const key = `${current}|${String(lease.spec?.renewTime ?? '')}|${lease.metadata?.resourceVersion ?? ''}`;
    if (observed?.key !== key) observed = { key, at: t };
    setHolder(current);
    const duration = (lease.spec?.leaseDurationSeconds ?? durationS) * 1000;
    if (current !== '' && current !== identity && observed.at + duration > t) return false;
    const acquiring = current !== identity;
    await api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: spec(acquiring, lease) } });
    setHolder(identity);
    return true;
  };

  const round = async (): Promise<void> => {
    let held = false;
    try {
      held = await tryAcquireOrRenew();
    } catch (e) {
      // 409: another replica wrote first; it is seen at the next round.
      if (statusOf(e) !== 409) log.warn('leader election: the Lease could not be read or written', { lease: `${namespace}/${name}`, error: (e as Error).message.split('\n')[0] });
    }
    if (closed) return;
    if (held) {
      lastRenew = now();
      if (!leading) {
        leading = true;
        log.info('started leading', { lease: `${namespace}/${name}`, identity });
        opts.onStartedLeading();
      }
    } else if (leading && now() - lastRenew >= renewDeadline) {
      stopLeading(`the Lease was not renewed for ${renewDeadline} ms`);
    } else if (leading && holder !== identity) {
      stopLeading(`${holder} holds the Lease`);
    }
  };

  const loop = (): void => {
    if (closed) return;
    running = round().finally(() => {
      if (!closed) timer = setTimeout(loop, retry);
    });
  };
  loop();

  return {
    isLeader: () => leading,
    leader: () => holder,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
      if (!leading) return;
      try {
        const lease = await api.readNamespacedLease({ name, namespace });
        if (lease.spec?.holderIdentity === identity) {
          // client-go's ReleaseOnCancel: an empty holder, expired at once.
          await api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(now()) as unknown as Date } } });
        }
      } catch (e) {
        log.warn('leader election: could not release the Lease; another replica takes it when it expires', { error: (e as Error).message.split('\n')[0] });
      }
      stopLeading('closed');
    },
  };
}
