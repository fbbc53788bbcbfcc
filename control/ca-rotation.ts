// The CA material in force and the root rotation, live. The CA folder
// (--ca-dir; in Kubernetes the mounted Secret tsmesh-ca, which kubelet
// updates by swapping a `..data` symlink) is watched and polled; a change is
// checked whole before anything of it is used, and a change that does not
// hold together (a key of another certificate, an issuer outside the bundle,
// a bundle that drops the root this replica signs under) is refused loudly:
// the last good material stays in force. During a rotation the decision of
// ca/rotation.ts runs on every acknowledgement of the discovery stream, and
// this replica moves to signing with the new material once its gate opens.
import { watch, type FSWatcher } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { CertificateAuthority } from '../ca/authority.js';
import { CA_FILES, issuingRoot, readCaMaterial, type CaDirMaterial } from '../ca/material.js';
import { planRotation, ROTATION_PHASES, type RotationPhase, type RotationPlan } from '../ca/rotation.js';
import { family } from '../contract/metrics.js';
import type { Logger } from '../lib/log.js';
import type { Discovery } from './stream.js';

export interface CaRotationOptions {
  /** The CA folder to follow. */
  dir: string;
  /** The authority that signs; its material is replaced in place. */
  authority: CertificateAuthority;
  /** The folder as read at start (what `authority` was made from). */
  material: CaDirMaterial;
  log: Logger;
  registry: Registry;
  /** Why the trust-bundle ConfigMaps or the injector's caBundle do not hold the bundle yet; undefined when they do or another replica writes them. */
  writers?: () => string | undefined;
  /** Re-read the folder this often even without a file event (default 5 s). */
  pollMs?: number;
  /** Re-check the gate this often during a rotation (default 1 s). */
  tickMs?: number;
  /** After start, no gate opens for this long: the proxies reconnect (default RECONNECT_GRACE_MS). */
  reconnectGraceMs?: number;
  now?: () => number;
}

/** Proxies back off 3 s at most between stream attempts (proxy/config/stream.ts STREAM_BACKOFF); three times that covers a restart. */
export const RECONNECT_GRACE_MS = 10_000;

export interface RootView {
  fingerprint: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  role: 'signing' | 'next' | 'trusted';
}

/** What /api/v1/ca and `tsmesh ca rotate status` show. */
export interface CaStatus {
  phase: RotationPhase;
  /** The root the certificates issued now chain to. */
  signingRoot: string;
  roots: RootView[];
  retiredRoots: string[];
  waitingFor: string[];
  rotation?: { startedAt: string; overlapSeconds: number };
  proxies: { proxy: string; trustsRoots: readonly string[] | null; certRoot: string | null }[];
  /** The last change of the folder that was refused, while it is still what the folder holds. */
  refused?: { at: string; error: string };
}

export class CaRotation {
  private material: CaDirMaterial;
  private currentRoot: string;
  private nextRoot: string | undefined;
  private signing: 'current' | 'next' = 'current';
  private plan: RotationPlan;
  private discovery: Discovery | undefined;
  private refused: { at: string; error: string; digest: string } | undefined;
  private readonly bundleListeners = new Set<(pem: string) => void>();
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private reading: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private readonly now: () => number;
  private readonly metrics: { rootExpiry: Gauge; phase: Gauge; reloads: Counter };
  private unsubscribe = (): void => {};
  private readonly reconnectingUntil: number;

  constructor(private readonly opts: CaRotationOptions) {
    this.now = opts.now ?? Date.now;
    this.reconnectingUntil = this.now() + (opts.reconnectGraceMs ?? RECONNECT_GRACE_MS);
    this.material = opts.material;
    this.currentRoot = issuingRoot(opts.material.current);
    this.nextRoot = opts.material.next ? issuingRoot(opts.material.next) : undefined;
    this.metrics = {
      rootExpiry: new Gauge({ ...family('tsmesh_ca_root_expiration_timestamp_seconds'), registers: [opts.registry] }),
      phase: new Gauge({ ...family('tsmesh_ca_rotation_phase'), registers: [opts.registry] }),
      reloads: new Counter({ ...family('tsmesh_ca_material_reloads_total'), registers: [opts.registry] }),
    };
    this.plan = this.decide();
    this.setGauges();
  }

  /** Follows what the proxies of this stream acknowledge. */
  attach(discovery: Discovery): void {
    this.discovery = discovery;
    this.unsubscribe = discovery.onTrustChange(() => this.evaluate());
    this.evaluate();
  }

  /** Watches and polls the folder, and re-checks the gate while a rotation runs. */
  start(): void {
    try {
      this.watcher = watch(this.opts.dir, () => this.soon());
      this.watcher.on('error', (e) => {
        this.opts.log.warn('cannot watch the CA folder; polling it only', { dir: this.opts.dir, error: e.message });
        this.watcher?.close();
      });
    } catch (e) {
      this.opts.log.warn('cannot watch the CA folder; polling it only', { dir: this.opts.dir, error: (e as Error).message });
    }
    const poll = setInterval(() => void this.reload(), this.opts.pollMs ?? 5000);
    const tick = setInterval(() => {
      if (this.nextRoot !== undefined) this.evaluate();
    }, this.opts.tickMs ?? 1000);
    for (const t of [poll, tick]) t.unref();
    this.timers.push(poll, tick);
  }

  /** Roots named retired in every config. */
  retiredRoots(): readonly string[] {
    return this.plan.retiredRoots;
  }

  /** Called with the new bundle (PEM) whenever the trust bundle changes. */
  onBundleChange(listener: (pem: string) => void): () => void {
    this.bundleListeners.add(listener);
    return () => this.bundleListeners.delete(listener);
  }

  /** Reads the folder now (a file event, the poll, a test) and takes a change that holds together. */
  reload(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        await this.readOnce();
      } while (this.again && !this.closed);
    })().finally(() => (this.reading = undefined));
    return this.reading;
  }

  status(): CaStatus {
    const authority = this.opts.authority;
    const roots = authority.trustBundle.roots.map((r): RootView => ({
      fingerprint: r.fingerprint256,
      subject: r.subject.replace(/\n/g, ', '),
      notBefore: new Date(r.validFrom).toISOString(),
      notAfter: new Date(r.validTo).toISOString(),
      role: r.fingerprint256 === authority.issuerRoot.fingerprint256 ? 'signing' : r.fingerprint256 === this.nextRoot ? 'next' : 'trusted',
    }));
    return {
      phase: this.plan.phase,
      signingRoot: authority.issuerRoot.fingerprint256,
      roots,
      retiredRoots: this.plan.retiredRoots,
      waitingFor: this.plan.waitingFor,
      ...(this.material.rotation ? { rotation: this.material.rotation } : {}),
      proxies: (this.discovery?.trustStates() ?? []).map((p) => ({ proxy: `${p.identity.spiffeId} at ${p.address ?? '?'}`, trustsRoots: p.bundle ?? null, certRoot: p.certRoot ?? null })),
      ...(this.refused ? { refused: { at: this.refused.at, error: this.refused.error } } : {}),
    };
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    this.watcher?.close();
    clearTimeout(this.debounce);
    for (const t of this.timers) clearInterval(t);
    this.bundleListeners.clear();
  }

  private soon(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    // Files written one after another (or kubelet's symlink swap) settle first.
    this.debounce = setTimeout(() => void this.reload(), 200);
    this.debounce.unref();
  }

  private async readOnce(): Promise<void> {
    let next: CaDirMaterial;
    try {
      next = await readCaMaterial(this.opts.dir);
    } catch (e) {
      this.refuse((e as Error).message, undefined);
      return;
    }
    if (next.digest === this.material.digest) {
      this.refused = undefined;
      return;
    }
    if (this.refused?.digest === next.digest) return;
    try {
      this.take(next);
    } catch (e) {
      this.refuse((e as Error).message, next.digest);
    }
  }

  private refuse(error: string, digest: string | undefined): void {
    if (digest !== undefined && this.refused?.digest === digest) return;
    this.refused = { at: new Date(this.now()).toISOString(), error, digest: digest ?? '' };
    this.metrics.reloads.inc({ result: 'refused' });
    this.opts.log.error('refused a change of the CA material; the last good material stays in force', {
      dir: this.opts.dir,
      error,
      hint: 'fix the folder (Secret tsmesh-ca) or put back what it held; "tsmesh ca rotate status" shows the material in force',
    });
  }

  /** Checks `m` whole, then puts it in force. Throws (changing nothing) when it does not hold together. */
  private take(m: CaDirMaterial): void {
    const { authority } = this.opts;
    // Each part signs as the authority would (a key that fits, a chain into the bundle, the trust domain).
    for (const part of [m.current, ...(m.next ? [m.next] : [])]) new CertificateAuthority({ trustDomain: authority.trustDomain, ...part });
    const currentRoot = issuingRoot(m.current);
    const nextRoot = m.next ? issuingRoot(m.next) : undefined;
    const inUse = authority.issuerRoot.fingerprint256;
    const fingerprints = m.trustBundle.fingerprints();
    // Dropping the root this replica signs under is the end of a rotation only when what signs next is the root it moves to.
    if (!fingerprints.includes(inUse) && currentRoot !== this.nextRoot)
      throw new Error(`the new ${CA_FILES.rootCert} drops the root the CA signs under (${inUse}); every certificate issued from it would stop being trusted. Rotate with "tsmesh ca rotate start" instead`);
    const keepSigningNext = this.signing === 'next' && nextRoot !== undefined && nextRoot === this.nextRoot;
    this.signing = keepSigningNext ? 'next' : 'current';
    authority.replaceMaterial(keepSigningNext ? m.next! : m.current);
    const bundleChanged = m.trustBundle.toPem() !== this.material.trustBundle.toPem();
    this.material = m;
    this.currentRoot = currentRoot;
    this.nextRoot = nextRoot;
    this.refused = undefined;
    this.metrics.reloads.inc({ result: 'applied' });
    this.opts.log.info('CA material changed', { roots: fingerprints, signingRoot: authority.issuerRoot.fingerprint256, rotating: nextRoot !== undefined });
    if (bundleChanged) for (const l of this.bundleListeners) l(m.trustBundle.toPem());
    this.evaluate(true);
  }

  private decide(): RotationPlan {
    const r = this.material.rotation;
    return planRotation({
      currentRoot: this.currentRoot,
      ...(this.nextRoot !== undefined ? { nextRoot: this.nextRoot } : {}),
      signing: this.signing,
      proxies: (this.discovery?.trustStates() ?? []).map((p) => ({
        proxy: `${p.identity.spiffeId} at ${p.address ?? '?'}`,
        ...(p.bundle ? { bundle: p.bundle } : {}),
        ...(p.certRoot ? { certRoot: p.certRoot } : {}),
      })),
      ...(this.opts.writers?.() !== undefined ? { writers: this.opts.writers()! } : {}),
      ...(r ? { overlapEndsAt: Date.parse(r.startedAt) + r.overlapSeconds * 1000 } : {}),
      reconnectingUntil: this.reconnectingUntil,
      now: this.now(),
    });
  }

  /** Runs the decision; switches to the new material when its gate opens; pushes when the retired roots change. */
  private evaluate(changed = false): void {
    if (this.closed) return;
    const before = this.plan;
    const plan = this.decide();
    if (plan.signWith === 'next' && this.signing === 'current' && this.material.next) {
      this.signing = 'next';
      this.plan = plan;
      this.opts.log.info('every proxy on the stream trusts the new root: signing with the new CA material', { root: this.nextRoot });
      this.opts.authority.replaceMaterial(this.material.next);
    }
    this.plan = plan;
    const retiredChanged = plan.retiredRoots.join() !== before.retiredRoots.join();
    if (retiredChanged || plan.phase !== before.phase || changed) {
      this.opts.log.info('CA rotation phase', { phase: plan.phase, retiredRoots: plan.retiredRoots, waitingFor: plan.waitingFor.slice(0, 5) });
      this.setGauges();
    }
    if (retiredChanged) this.discovery?.refresh();
  }

  private setGauges(): void {
    for (const p of ROTATION_PHASES) this.metrics.phase.set({ phase: p }, p === this.plan.phase ? 1 : 0);
    this.metrics.rootExpiry.reset();
    const signing = this.opts.authority.issuerRoot.fingerprint256;
    for (const r of this.opts.authority.trustBundle.roots) {
      const role = r.fingerprint256 === signing ? 'signing' : r.fingerprint256 === this.nextRoot ? 'next' : 'trusted';
      this.metrics.rootExpiry.set({ fingerprint: r.fingerprint256, role }, new Date(r.validTo).getTime() / 1000);
    }
  }
}
