// Namespaces and pods -> what each namespace and each workload sets over the
// mesh's settings, from their annotations (contract/annotations.ts:
// tsmesh.io/mtls-mode, tsmesh.io/port-mtls-modes,
// tsmesh.io/default-inbound-policy). Pure; kubernetes-model.ts calls it.
//
// A workload is the meshed pods of one ServiceAccount: their proxies get one
// config. Pods that disagree (a rollout changing an annotation, two
// Deployments sharing a ServiceAccount) get the stricter setting, field by
// field and port by port (STRICT over PERMISSIVE; deny over
// all-authenticated over all-unauthenticated), and a problem says so.
//
// A value that cannot be read is a problem too: that object's last readable
// settings stay in force (none, if it never had any), as with a bad
// tsmesh-config. The injector refuses such a pod when it is created, but a
// pod's and a namespace's annotations can change afterwards.
import { scopedSettings, stricterEgress, stricterMtls, stricterPolicy, type ScopedSettings } from '../../contract/annotations.js';
import type { DefaultInboundPolicy, MeshSettings, MtlsMode } from '../../contract/proxy-config.js';
import { DEFAULT_ACCESS_LOG, DEFAULT_TRACING } from '../../contract/proxy-config.js';
import type { AccessLogMode } from '../../contract/vocabulary.js';

/** Which access-log mode logs more, for pods that disagree. */
const ACCESS_LOG_FULLNESS: Record<AccessLogMode, number> = { off: 0, errors: 1, sampled: 2, all: 3 };
import { STATUS_ANNOTATION } from '../../contract/names.js';
import type { NamespaceSettingsModel, WorkloadSettingsModel } from '../model.js';
import type { NamespaceFields, PodFields } from './kubernetes-fields.js';

export interface SettingsProblem {
  kind: 'Namespace' | 'Pod' | 'Workload';
  namespace: string;
  /** The namespace's, the pod's, or the workload's ServiceAccount's name. */
  name: string;
  message: string;
}

/** The last readable settings of each Namespace (by name) and pod (by uid). */
export interface LastGoodSettings {
  namespaces: Map<string, ScopedSettings>;
  pods: Map<string, ScopedSettings>;
}

export const emptyLastGood = (): LastGoodSettings => ({ namespaces: new Map(), pods: new Map() });

export interface SettingsResult {
  namespaceSettings: NamespaceSettingsModel[];
  workloadSettings: WorkloadSettingsModel[];
  problems: SettingsProblem[];
  /** To pass in next time. */
  lastGood: LastGoodSettings;
}

const isEmpty = (s: ScopedSettings): boolean => Object.keys(s).length === 0;
const same = (a: ScopedSettings, b: ScopedSettings): boolean => JSON.stringify(a) === JSON.stringify(b);
const byKey = (a: string, b: string): number => a.localeCompare(b);

/** A pod that runs (or will): meshed, not finished. */
const isLiveMeshedPod = (p: PodFields): boolean => p.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed';

/** The stricter of what the pods would get each on their own, for the fields where they differ. */
function strictest(pods: readonly ScopedSettings[], ns: ScopedSettings, mesh: MeshSettings): ScopedSettings {
  const out: ScopedSettings = {};
  const mtlsOf = (p: ScopedSettings): MtlsMode => p.mtlsMode ?? ns.mtlsMode ?? mesh.mtlsMode;
  if (pods.some((p) => p.mtlsMode !== undefined)) out.mtlsMode = pods.map(mtlsOf).reduce(stricterMtls);
  const ports = new Set(pods.flatMap((p) => Object.keys(p.portMtlsModes ?? {})));
  if (ports.size > 0) {
    out.portMtlsModes = {};
    for (const port of [...ports].sort(byKey)) out.portMtlsModes[port] = pods.map((p) => p.portMtlsModes?.[port] ?? ns.portMtlsModes?.[port] ?? mtlsOf(p)).reduce(stricterMtls);
  }
  if (pods.some((p) => p.defaultInboundPolicy !== undefined)) {
    const policyOf = (p: ScopedSettings): DefaultInboundPolicy =>
      p.defaultInboundPolicy ?? ns.defaultInboundPolicy ?? mesh.defaultInboundPolicy ?? (mtlsOf(p) === 'PERMISSIVE' ? 'all-unauthenticated' : 'all-authenticated');
    out.defaultInboundPolicy = pods.map(policyOf).reduce(stricterPolicy);
  }
  // Telemetry is no matter of strictness: the pods get the most of it (export on, the highest sampling).
  if (pods.some((p) => p.tracing !== undefined)) {
    const each = pods.map((p) => ({ ...mesh.tracing, ...ns.tracing, ...p.tracing }));
    const collector = each.find((t) => t.export && t.collector !== undefined)?.collector ?? each.find((t) => t.collector !== undefined)?.collector;
    out.tracing = { export: each.some((t) => t.export === true), sampling: Math.max(...each.map((t) => t.sampling ?? DEFAULT_TRACING.sampling)), ...(collector ? { collector } : {}) };
  }
  // Access logs likewise (all over sampled over errors over off), but the query is kept only where every pod keeps it.
  if (pods.some((p) => p.accessLog !== undefined)) {
    const each = pods.map((p) => ({ ...DEFAULT_ACCESS_LOG, ...mesh.accessLog, ...ns.accessLog, ...p.accessLog }));
    const mode = each.map((a) => a.mode).reduce((a, b) => (ACCESS_LOG_FULLNESS[a] >= ACCESS_LOG_FULLNESS[b] ? a : b));
    out.accessLog = { mode, sampling: Math.max(...each.map((a) => a.sampling)), query: each.every((a) => a.query) };
  }
  // Egress: registry-only over allow-all, and only the entries every pod allows.
  if (pods.some((p) => p.egressMode !== undefined)) out.egressMode = pods.map((p) => p.egressMode ?? ns.egressMode ?? mesh.egress?.mode ?? 'allow-all').reduce(stricterEgress);
  if (pods.some((p) => p.egressAllow !== undefined)) {
    const [first, ...rest] = pods.map((p) => (p.egressAllow ?? []).map((r) => JSON.stringify(r)));
    out.egressAllow = (first ?? []).filter((r) => rest.every((other) => other.includes(r))).map((r) => JSON.parse(r) as NonNullable<ScopedSettings['egressAllow']>[number]);
  }
  return out;
}

/**
 * The settings of every namespace and workload that sets any, sorted; the
 * problems met; `lastGood` is read, not modified.
 */
export function settingsFromObjects(namespaces: readonly NamespaceFields[], pods: readonly PodFields[], mesh: MeshSettings, lastGood: LastGoodSettings): SettingsResult {
  const problems: SettingsProblem[] = [];
  const next = emptyLastGood();
  const read = (annotations: Record<string, string> | undefined, previous: ScopedSettings | undefined, problem: (message: string) => void): ScopedSettings => {
    try {
      return scopedSettings(annotations, '');
    } catch (e) {
      problem(`annotation ${(e as Error).message}; ${previous ? 'its last readable settings stay in force' : 'ignored until it is fixed'}`);
      return previous ?? {};
    }
  };

  const namespaceSettings: NamespaceSettingsModel[] = [];
  const nsByName = new Map<string, ScopedSettings>();
  for (const ns of namespaces) {
    const name = ns.metadata?.name;
    if (!name) continue;
    const settings = read(ns.metadata?.annotations, lastGood.namespaces.get(name), (message) => problems.push({ kind: 'Namespace', namespace: name, name, message }));
    next.namespaces.set(name, settings);
    nsByName.set(name, settings);
    if (!isEmpty(settings)) namespaceSettings.push({ namespace: name, settings });
  }

  const workloads = new Map<string, { namespace: string; serviceAccount: string; pods: ScopedSettings[] }>();
  for (const pod of pods) {
    if (!isLiveMeshedPod(pod)) continue;
    const namespace = pod.metadata?.namespace ?? 'default';
    const serviceAccount = pod.spec?.serviceAccountName || 'default';
    const uid = pod.metadata?.uid ?? `${namespace}/${pod.metadata?.name}`;
    const settings = read(pod.metadata?.annotations, lastGood.pods.get(uid), (message) => problems.push({ kind: 'Pod', namespace, name: pod.metadata?.name ?? '', message }));
    next.pods.set(uid, settings);
    const key = `${namespace}/${serviceAccount}`;
    let w = workloads.get(key);
    if (!w) workloads.set(key, (w = { namespace, serviceAccount, pods: [] }));
    w.pods.push(settings);
  }

  const workloadSettings: WorkloadSettingsModel[] = [];
  for (const key of [...workloads.keys()].sort(byKey)) {
    const w = workloads.get(key)!;
    let settings = w.pods[0]!;
    if (!w.pods.every((p) => same(p, settings))) {
      settings = strictest(w.pods, nsByName.get(w.namespace) ?? {}, mesh);
      problems.push({
        kind: 'Workload',
        namespace: w.namespace,
        name: w.serviceAccount,
        message: `the pods of ServiceAccount ${w.serviceAccount} set different inbound settings; its proxies take the stricter of each: ${JSON.stringify(settings)}`,
      });
    }
    if (!isEmpty(settings)) workloadSettings.push({ namespace: w.namespace, serviceAccount: w.serviceAccount, settings });
  }
  namespaceSettings.sort((a, b) => byKey(a.namespace, b.namespace));
  return { namespaceSettings, workloadSettings, problems, lastGood: next };
}
