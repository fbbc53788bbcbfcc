// Live root rotation, the decision alone (pure: no I/O, no clock of its own).
// A rotation moves through three phases; the CA folder (ca/material.ts)
// holds which one it is in, the control plane what its proxies acknowledged:
//
//   trusting-new   the bundle holds the old root and the new one, the old
//                  material still signs. It stays so until every proxy on the
//                  stream acknowledged a config whose bundle holds the new
//                  root, the trust-bundle ConfigMaps and the injector's
//                  caBundle hold it (where this replica writes them), and the
//                  overlap of rotation.json has passed (the proxies of the
//                  other replicas, and pods that start from the ConfigMap).
//   issuing-new    the new material signs; the old root is named retired in
//                  every config, so a proxy whose certificate chains to it
//                  renews at once. It waits for every proxy on the stream to
//                  acknowledge a certificate that chains to the new root.
// A control plane that just started opens no gate until its proxies had the
// time to reconnect (their stream backs off 3 s at most): until then the
// proxies on its stream are not all those that depend on it.
//
//   ready-to-retire  nothing on the stream depends on the old root: removing
//                  it from the bundle ("tsmesh ca rotate finish") is safe.
//
// Once this replica signs with the new material it does not go back (a new
// rotation, or a control plane restarted mid-rotation, starts from
// trusting-new again: proxies re-acknowledge within seconds of reconnecting).
import { ROTATION_PHASES, type RotationPhase } from '../contract/vocabulary.js';

export type { RotationPhase };
export { ROTATION_PHASES };

/** What a proxy on the stream acknowledged, as the control plane saw it. */
export interface ProxyTrustView {
  /** The proxy, for the operator: SPIFFE ID and address. */
  proxy: string;
  /** Fingerprints of the roots in the last config it acknowledged; undefined before its first acknowledgement. */
  bundle?: readonly string[];
  /** Fingerprint of the root its certificate (as presented with its last acknowledgement) chains to. */
  certRoot?: string;
}

export interface RotationInput {
  /** Fingerprint of the root the material that signs now (outside a rotation: the only one) chains to. */
  currentRoot: string;
  /** Fingerprint of the root the material to come chains to; undefined outside a rotation. */
  nextRoot?: string;
  /** What this replica signs with now. */
  signing: 'current' | 'next';
  proxies: readonly ProxyTrustView[];
  /** Why the ConfigMaps or the injector's caBundle do not hold the bundle yet; undefined when they do (or another replica writes them). */
  writers?: string;
  /** When both roots have been trusted long enough (ms since the epoch); undefined: no wait. */
  overlapEndsAt?: number;
  /**
   * Until when the proxies of a control plane that just started may still be
   * reconnecting (ms since the epoch): no gate opens before, as the proxies on
   * the stream are not yet all the proxies that depend on it.
   */
  reconnectingUntil?: number;
  now: number;
}

export interface RotationPlan {
  phase: RotationPhase;
  /** What to sign with from now on. */
  signWith: 'current' | 'next';
  /** Roots named retired in every config (a proxy whose certificate chains to one renews at once). */
  retiredRoots: string[];
  /** What the next phase waits for, one line each, for the operator. */
  waitingFor: string[];
}

/** The most proxies named one by one in `waitingFor`; the rest are counted. */
const NAMED_PROXIES = 10;

function listProxies(proxies: readonly ProxyTrustView[], what: string): string[] {
  if (proxies.length === 0) return [];
  const named = proxies.slice(0, NAMED_PROXIES).map((p) => `${p.proxy}: ${what}`);
  return proxies.length > NAMED_PROXIES ? [...named, `${proxies.length - NAMED_PROXIES} more proxies: ${what}`] : named;
}

/** The next step of a rotation, from the CA material in force and what the proxies on the stream acknowledged. */
export function planRotation(input: RotationInput): RotationPlan {
  const { currentRoot, nextRoot } = input;
  if (nextRoot === undefined) return { phase: 'steady', signWith: 'current', retiredRoots: [], waitingFor: [] };
  const reconnecting =
    input.reconnectingUntil !== undefined && input.now < input.reconnectingUntil
      ? [`the proxies to reconnect to this control plane, which started lately (until ${new Date(input.reconnectingUntil).toISOString()})`]
      : [];
  if (input.signing === 'current') {
    const waitingFor = [
      ...reconnecting,
      ...(input.writers !== undefined ? [input.writers] : []),
      ...(input.overlapEndsAt !== undefined && input.now < input.overlapEndsAt
        ? [`the overlap of both roots until ${new Date(input.overlapEndsAt).toISOString()} (rotation.json overlapSeconds)`]
        : []),
      ...listProxies(
        input.proxies.filter((p) => !p.bundle?.includes(nextRoot)),
        'has not acknowledged a config that trusts the new root',
      ),
    ];
    if (waitingFor.length > 0) return { phase: 'trusting-new', signWith: 'current', retiredRoots: [], waitingFor };
  }
  const retiredRoots = currentRoot === nextRoot ? [] : [currentRoot];
  const waitingFor = [
    ...reconnecting,
    ...listProxies(
      input.proxies.filter((p) => p.certRoot !== nextRoot),
      'has not acknowledged a certificate that chains to the new root',
    ),
  ];
  return { phase: waitingFor.length > 0 ? 'issuing-new' : 'ready-to-retire', signWith: 'next', retiredRoots, waitingFor };
}
