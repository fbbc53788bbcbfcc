// ConfigMap tsmesh-trust-bundle (key root-cert.pem: the CA's trust bundle in
// PEM) in every meshed namespace: those labelled tsmesh.io/inject=enabled,
// except the system namespaces the injector never touches. Injected pods
// mount it, and the proxy verifies the CA with it before it holds a
// certificate.
//
// Two informers (labelled Namespaces; ConfigMaps named tsmesh-trust-bundle in
// all namespaces) feed a reconcile loop: a namespace without the ConfigMap
// gets one (create), a ConfigMap whose root-cert.pem differs from the bundle
// is updated (replace, other keys kept). So a new namespace, a rotated root
// (setBundle) or a ConfigMap edited or deleted by hand all converge within a
// debounce. A namespace that loses its label keeps its ConfigMap: RBAC grants
// no delete, and pods there may still mount it.
import { CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Namespace } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.js';
import { INJECT_ENABLED, INJECT_LABEL, SYSTEM_NAMESPACES, TRUST_BUNDLE_CONFIGMAP, CONTROL_PLANE_NAME, TRUST_BUNDLE_KEY, MANAGED_BY_LABELS } from '../contract/names.js';
import { ResilientInformer, watchErrorsCounter } from './sources/kubernetes-informer.js';


export type TrustBundleAction = { op: 'create'; namespace: string } | { op: 'update'; namespace: string; configMap: V1ConfigMap };

/** Whether a namespace should hold the trust bundle. */
export function isMeshedNamespace(ns: V1Namespace): boolean {
  const name = ns.metadata?.name;
  return (
    !!name && ns.metadata?.labels?.[INJECT_LABEL] === INJECT_ENABLED && !SYSTEM_NAMESPACES.includes(name) && !ns.metadata?.deletionTimestamp && ns.status?.phase !== 'Terminating'
  );
}

/** Pure: what to create or update so every meshed namespace holds `pem`. */
export function planTrustBundle(namespaces: readonly V1Namespace[], configMaps: readonly V1ConfigMap[], pem: string): TrustBundleAction[] {
  const byNamespace = new Map(configMaps.filter((c) => c.metadata?.name === TRUST_BUNDLE_CONFIGMAP).map((c) => [c.metadata?.namespace ?? '', c]));
  const out: TrustBundleAction[] = [];
  for (const ns of [...namespaces].filter(isMeshedNamespace).sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))) {
    const namespace = ns.metadata!.name!;
    const cm = byNamespace.get(namespace);
    if (!cm) out.push({ op: 'create', namespace });
    else if (cm.data?.[TRUST_BUNDLE_KEY] !== pem) out.push({ op: 'update', namespace, configMap: cm });
  }
  return out;
}

export interface TrustBundleSyncOptions {
  kc: KubeConfig;
  log: Logger;
  /** For tsmesh_control_watch_errors_total{resource}. */
  registry: Registry;
  /** The CA's trust bundle, PEM (TrustBundle.toPem()). */
  bundlePem: string;
  debounceMs?: number;
  /** Reconcile this often even without events (default 5 min). */
  resyncMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export interface TrustBundleSync {
  /** A new bundle (root rotation): every meshed namespace gets it. */
  setBundle(pem: string): void;
  /** Resolves once every meshed namespace holds the current bundle (at least once). */
  synced(): Promise<void>;
  /** Why the bundle is not everywhere yet; undefined when it is. */
  notReady(): string | undefined;
  close(): void;
}

export function startTrustBundleSync(opts: TrustBundleSyncOptions): TrustBundleSync {
  const { kc, log } = opts;
  const core = kc.makeApiClient(CoreV1Api);
  const errors = watchErrorsCounter(opts.registry);
  let pem = opts.bundlePem;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelay = opts.backoffInitialMs ?? 1000;
  let running = false;
  let again = false;
  let done = false;
  let lastProblem: string | undefined = 'the trust bundle has not been written yet';
  const waiters: (() => void)[] = [];

  const schedule = (): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void reconcile(), opts.debounceMs ?? 50);
  };
  const informerOpts = {
    log,
    errors,
    onChange: schedule,
    ...(opts.backoffInitialMs !== undefined ? { backoffInitialMs: opts.backoffInitialMs } : {}),
    ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
  };
  const labelSelector = `${INJECT_LABEL}=${INJECT_ENABLED}`;
  const namespaces = new ResilientInformer<V1Namespace>(kc, { resource: 'namespaces', path: '/api/v1/namespaces', list: () => core.listNamespace({ labelSelector }), labelSelector }, informerOpts);
  const fieldSelector = `metadata.name=${TRUST_BUNDLE_CONFIGMAP}`;
  const configMaps = new ResilientInformer<V1ConfigMap>(
    kc,
    { resource: 'configmaps', path: '/api/v1/configmaps', list: () => core.listConfigMapForAllNamespaces({ fieldSelector }), fieldSelector },
    informerOpts,
  );

  const apply = async (a: TrustBundleAction, bundle: string): Promise<void> => {
    if (a.op === 'create') {
      await core.createNamespacedConfigMap({
        namespace: a.namespace,
        fieldManager: CONTROL_PLANE_NAME,
        body: { metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: a.namespace, labels: { ...MANAGED_BY_LABELS } }, data: { [TRUST_BUNDLE_KEY]: bundle } },
      });
    } else {
      const cm = a.configMap;
      await core.replaceNamespacedConfigMap({
        namespace: a.namespace,
        name: TRUST_BUNDLE_CONFIGMAP,
        fieldManager: CONTROL_PLANE_NAME,
        // resourceVersion from the cache: a concurrent change fails with 409 and is reconciled again.
        body: { ...cm, apiVersion: 'v1', kind: 'ConfigMap', metadata: { ...cm.metadata, labels: { ...cm.metadata?.labels, ...MANAGED_BY_LABELS } }, data: { ...cm.data, [TRUST_BUNDLE_KEY]: bundle } },
      });
    }
    log.info(a.op === 'create' ? 'trust bundle created' : 'trust bundle updated', { namespace: a.namespace });
  };

  const reconcile = async (): Promise<void> => {
    if (closed) return;
    if (!namespaces.synced || !configMaps.synced) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    const bundle = pem;
    const failures: string[] = [];
    try {
      const actions = planTrustBundle(namespaces.list(), configMaps.list(), bundle);
      for (const a of actions) {
        if (closed) return;
        try {
          await apply(a, bundle);
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          // 409: it exists already, or changed since it was cached; the watch brings it and a new round.
          if (code === 409) again = true;
          else failures.push(`${a.namespace}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
    } finally {
      running = false;
    }
    if (failures.length > 0) {
      lastProblem = `the trust bundle could not be written in ${failures.length} namespace(s)`;
      log.warn('writing the trust bundle failed; will retry', { failures, retryInMs: retryDelay });
      if (!retryTimer && !closed) {
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          schedule();
        }, retryDelay);
        retryTimer.unref();
        retryDelay = Math.min(retryDelay * 2, opts.backoffMaxMs ?? 30_000);
      }
    } else if (!again) {
      retryDelay = opts.backoffInitialMs ?? 1000;
      if (bundle === pem) {
        lastProblem = undefined;
        done = true;
        for (const w of waiters.splice(0)) w();
      }
    }
    if (again || bundle !== pem) {
      again = false;
      schedule();
    }
  };

  namespaces.start();
  configMaps.start();
  const resync = setInterval(schedule, opts.resyncMs ?? 300_000);
  resync.unref();

  return {
    setBundle(next: string) {
      if (next === pem) return;
      pem = next;
      done = false;
      lastProblem = 'a new trust bundle is being written';
      schedule();
    },
    synced() {
      return done ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve));
    },
    notReady() {
      if (!namespaces.synced || !configMaps.synced) return 'the trust bundle sync has not listed namespaces and ConfigMaps yet';
      return lastProblem;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      clearTimeout(retryTimer);
      clearInterval(resync);
      namespaces.stop();
      configMaps.stop();
    },
  };
}
