// `tsmesh check`: is the mesh healthy? Everything is read through the
// Kubernetes API with the user's credentials; the control plane and the
// proxies are reached through the API server's service and pod proxy
// (services/<name>:<port>/proxy, pods/<name>:15020/proxy), so no
// port-forward is needed. Every failing line says how to fix it.
//
// Lines are `ok`, `warn` (worth a look, not broken) or `fail` (broken, or
// about to break: a CA certificate within 30 days of expiry fails, since
// expired roots are the best-known cause of mesh-wide outages).
import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { splitPemCertificates } from '../ca/der.js';
import { CA_FILES } from '../ca/material.js';
import { MESH_NAMESPACE, CONTROL_PLANE_NAME, MESH_CONFIG_NAME, INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, INIT_CONTAINER, PROXY_CONTAINER, STATUS_ANNOTATION, SYSTEM_NAMESPACES, CA_SECRET_NAME, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY, WEBHOOK_CONFIGURATION_NAME } from '../contract/names.js';
import { parseMeshConfigMap } from '../control/sources/kubernetes-map.js';
import { parseDuration } from '../lib/duration.js';
import { PROXY_DEFAULTS } from '../contract/env.js';
import { deploymentPath, rolloutPending } from './apply.js';
import { caFilesFromSecret, type CaFiles } from './ca.js';
import { KubeError, type Kube } from './kube.js';
import { DEFAULT_TRUST_DOMAIN } from '../contract/spiffe.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckLine {
  section: string;
  status: CheckStatus;
  message: string;
  /** How to fix it (warn and fail lines). */
  fix?: string;
}

export interface CheckOptions {
  now?: () => Date;
  /** A CA certificate closer than this to its end fails (default 30). */
  caExpiryDays?: number;
  /** Read each meshed pod's proxy metrics for its certificate (default true). */
  proxyMetrics?: boolean;
  /** Per request (default 5 s). */
  timeoutMs?: number;
  /** Parallel requests to proxies (default 8). */
  concurrency?: number;
}

/** Kubernetes that runs native sidecars (restartPolicy Always init containers) by default. */
export const MIN_KUBERNETES_MINOR = 29;
export const DEFAULT_CA_EXPIRY_DAYS = 30;
/** A proxy renews at half its certificate's life (+-10%); less than a quarter left means renewal is failing. */
export const PROXY_CERT_MIN_REMAINING = 0.25;
export const CRD_NAMES = ['trafficpolicies.tsmesh.io', 'authorizationpolicies.tsmesh.io'] as const;

const NS = MESH_NAMESPACE;
const DAY_MS = 86_400_000;
const LOGS = `kubectl -n ${NS} logs deployment/${CONTROL_PLANE_NAME}`;
const ROTATE =
  'rotate the root: make a new one (tsmesh ca init --out new-ca), append the current root-cert.pem to new-ca/root-cert.pem so both are trusted, ' +
  'run tsmesh install --ca-dir new-ca, and drop the old root once every proxy has renewed its certificate';

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  ownerReferences?: { kind: string; name: string }[];
}
interface Obj {
  metadata?: Meta;
}
interface List<T> {
  items?: T[];
}
interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
}
interface Deployment extends Obj {
  spec?: { replicas?: number; template?: { spec?: { containers?: Container[] } } };
  status?: { replicas?: number; availableReplicas?: number; readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number };
}
interface ContainerStatus {
  name: string;
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number } };
}
interface Pod extends Obj {
  spec?: { hostNetwork?: boolean; initContainers?: Container[]; containers?: Container[] };
  status?: { phase?: string; podIP?: string; initContainerStatuses?: ContainerStatus[]; containerStatuses?: ContainerStatus[] };
}
interface Webhook {
  name: string;
  failurePolicy?: string;
  clientConfig?: { caBundle?: string; service?: { name?: string; namespace?: string; port?: number; path?: string }; url?: string };
}

/** Runs fn over items, at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function errorText(e: unknown): string {
  return e instanceof KubeError ? `${e.status}${e.reason ? ` ${e.reason}` : ''}: ${e.apiMessage}` : (e as Error).message;
}

const forbidden = (e: unknown): boolean => e instanceof KubeError && e.status === 403;

function subject(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ', ') || '(empty subject)';
}

function days(ms: number): string {
  const d = Math.floor(ms / DAY_MS);
  return d === 1 ? '1 day' : `${d} days`;
}

function human(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 2 * 86_400) return `${Math.floor(s / 86_400)}d`;
  if (s >= 2 * 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  if (s >= 120) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}

/** The value of --flag=value (or --flag value) in a container's args, else of env var `env`. */
function flagValue(c: Container | undefined, flag: string, env: string): string | undefined {
  const args = c?.args ?? [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
    if (a === flag) return args[i + 1];
  }
  return c?.env?.find((e) => e.name === env)?.value;
}

function fingerprints(pem: string): Set<string> {
  const out = new Set<string>();
  for (const p of splitPemCertificates(pem)) {
    try {
      out.add(new X509Certificate(p).fingerprint256);
    } catch {
      out.add(`unparsable:${p.length}`);
    }
  }
  return out;
}

const sameSet = (a: Set<string>, b: Set<string>): boolean => a.size === b.size && [...a].every((x) => b.has(x));

/** The Deployment name behind a pod, guessed from its ReplicaSet owner; undefined for other owners. */
function workloadOf(pod: Pod): string | undefined {
  const owner = pod.metadata?.ownerReferences?.[0];
  if (!owner) return undefined;
  if (owner.kind === 'ReplicaSet') return `deployment/${owner.name.replace(/-[a-z0-9]{6,10}$/, '')}`;
  if (owner.kind === 'StatefulSet' || owner.kind === 'DaemonSet') return `${owner.kind.toLowerCase()}/${owner.name}`;
  return undefined;
}

/** The value of the identity certificate gauge in a Prometheus text exposition, or undefined. */
export function certExpiryFromMetrics(text: string): number | undefined {
  const m = /^tsmesh_identity_cert_expiration_timestamp_seconds(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
  if (!m) return undefined;
  const v = Number(m[1]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

class Checker {
  readonly lines: CheckLine[] = [];
  private section = '';
  private readonly now: () => Date;
  private readonly caExpiryMs: number;
  private readonly timeoutMs: number;
  private trustDomain = DEFAULT_TRUST_DOMAIN;
  private certTtlMs = 3_600_000;
  /** Fingerprints of the roots in Secret tsmesh-ca, once read. */
  private roots: Set<string> | undefined;

  constructor(
    private readonly kube: Kube,
    private readonly opts: CheckOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.caExpiryMs = (opts.caExpiryDays ?? DEFAULT_CA_EXPIRY_DAYS) * DAY_MS;
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  private add(status: CheckStatus, message: string, fix?: string): void {
    this.lines.push({ section: this.section, status, message, ...(fix !== undefined && status !== 'ok' ? { fix } : {}) });
  }
  private ok(message: string): void {
    this.add('ok', message);
  }
  private warn(message: string, fix: string): void {
    this.add('warn', message, fix);
  }
  private fail(message: string, fix: string): void {
    this.add('fail', message, fix);
  }

  private async get<T>(path: string, query?: Record<string, string>): Promise<T | undefined> {
    return this.kube.get<T>(path, query);
  }

  async run(): Promise<CheckLine[]> {
    this.section = 'Kubernetes';
    if (!(await this.kubernetes())) return this.lines;
    this.section = 'Control plane';
    if (!(await this.controlPlane())) {
      this.section = 'Webhook';
      await this.leftoverWebhook();
      return this.lines;
    }
    this.section = 'CA';
    await this.ca();
    this.section = 'Webhook';
    await this.webhook();
    this.section = 'Data plane';
    await this.dataPlane();
    return this.lines;
  }

  private async kubernetes(): Promise<boolean> {
    let version: { major?: string; minor?: string; gitVersion?: string } | undefined;
    try {
      version = (await this.kube.request('GET', '/version', { timeoutMs: this.timeoutMs })).body as typeof version;
    } catch (e) {
      this.fail(`cannot reach the API server ${this.kube.server}: ${errorText(e)}`, 'check KUBECONFIG, --kubeconfig or --context (kubectl cluster-info should answer)');
      return false;
    }
    const major = Number.parseInt(version?.major ?? '', 10);
    const minor = Number.parseInt(version?.minor ?? '', 10);
    const text = version?.gitVersion ?? `${version?.major}.${version?.minor}`;
    if (major === 1 && minor < MIN_KUBERNETES_MINOR)
      this.fail(`Kubernetes ${text} has no native sidecars (1.${MIN_KUBERNETES_MINOR} or later needed): the proxy would not start before the app`, `upgrade the cluster to 1.${MIN_KUBERNETES_MINOR} or later (kind: kind create cluster --config kind/kind-config.yaml)`);
    else this.ok(`API server ${this.kube.server} runs Kubernetes ${text}`);
    return true;
  }

  private async controlPlane(): Promise<boolean> {
    try {
      if (!(await this.get(`/api/v1/namespaces/${NS}`))) {
        this.fail(`namespace ${NS} does not exist: tsmesh is not installed`, 'tsmesh install');
        return false;
      }
    } catch (e) {
      this.fail(`cannot read namespace ${NS}: ${errorText(e)}`, 'tsmesh check needs read access to the tsmesh-system namespace and the cluster-wide objects of tsmesh (a cluster admin has it)');
      return false;
    }
    this.ok(`namespace ${NS} exists`);

    let crdsOk = true;
    for (const name of CRD_NAMES) {
      type Crd = { status?: { conditions?: { type: string; status: string }[] } };
      const crd: Crd | undefined | Error = await this.get<Crd>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      if (crd instanceof Error) this.warn(`cannot read CustomResourceDefinition ${name}: ${errorText(crd)}`, 'run tsmesh check as a user who may read CRDs');
      else if (!crd) this.fail(`CustomResourceDefinition ${name} is missing: its policies are not served`, 'tsmesh install');
      else if (!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) this.fail(`CustomResourceDefinition ${name} is not established`, `kubectl describe crd ${name}`);
      else continue;
      crdsOk = false;
    }
    if (crdsOk) this.ok(`CustomResourceDefinitions ${CRD_NAMES.join(', ')} are served`);

    const deployment = await this.get<Deployment>(deploymentPath);
    if (!deployment) {
      this.fail(`Deployment ${NS}/${CONTROL_PLANE_NAME} does not exist`, 'tsmesh install');
      return true;
    }
    const container = deployment.spec?.template?.spec?.containers?.find((c) => c.name === 'control-plane') ?? deployment.spec?.template?.spec?.containers?.[0];
    this.trustDomain = flagValue(container, '--trust-domain', 'TSMESH_TRUST_DOMAIN') ?? this.trustDomain;
    const ttl = flagValue(container, '--cert-ttl', 'TSMESH_CERT_TTL');
    if (ttl) {
      try {
        this.certTtlMs = parseDuration(ttl, '--cert-ttl');
      } catch {
        // the control plane refuses it itself; its state shows below
      }
    }
    const want = deployment.spec?.replicas ?? 1;
    const available = deployment.status?.availableReplicas ?? 0;
    const pending = rolloutPending(deployment);
    const describe = `kubectl -n ${NS} describe deployment ${CONTROL_PLANE_NAME}; ${LOGS}`;
    if (available === 0) this.fail(`Deployment ${CONTROL_PLANE_NAME}: no replica is available (${pending ?? 'none ready'})`, describe);
    else if (pending) this.warn(`Deployment ${CONTROL_PLANE_NAME}: ${available} of ${want} replicas available (${pending})`, describe);
    else this.ok(`Deployment ${CONTROL_PLANE_NAME}: ${available}/${want} replicas available`);

    const slices = await this.get<List<{ endpoints?: { addresses?: string[]; conditions?: { ready?: boolean } }[] }>>(`/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
      labelSelector: `kubernetes.io/service-name=${CONTROL_PLANE_NAME}`,
    });
    const ready = (slices?.items ?? []).flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length;
    if (ready === 0) this.fail(`Service ${CONTROL_PLANE_NAME} has no ready endpoint: the CA, discovery and the webhook are unreachable`, describe);
    else this.ok(`Service ${CONTROL_PLANE_NAME} has ${ready} ready endpoint${ready === 1 ? '' : 's'}`);

    if (ready > 0) {
      const path = `/api/v1/namespaces/${NS}/services/http:${CONTROL_PLANE_NAME}:http-admin/proxy/readyz`;
      try {
        await this.kube.request('GET', path, { timeoutMs: this.timeoutMs });
        this.ok('the control plane answers /readyz: ready');
      } catch (e) {
        if (forbidden(e)) this.warn(`cannot ask the control plane's /readyz: ${errorText(e)}`, 'tsmesh check needs the services/proxy permission in tsmesh-system');
        else this.fail(`the control plane's /readyz: ${e instanceof KubeError ? e.apiMessage.trim() : (e as Error).message}`, LOGS);
      }
    }

    const cm = await this.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${NS}/configmaps/${MESH_CONFIG_NAME}`);
    if (!cm) this.ok(`ConfigMap ${MESH_CONFIG_NAME} is absent: default mesh settings`);
    else {
      try {
        const parsed = parseMeshConfigMap(cm as never, this.trustDomain);
        if (parsed.certificateTtlSeconds) this.certTtlMs = parsed.certificateTtlSeconds * 1000;
        this.ok(`ConfigMap ${MESH_CONFIG_NAME}: mtlsMode ${parsed.mesh.mtlsMode}, trust domain ${this.trustDomain}`);
      } catch (e) {
        this.fail(`ConfigMap ${MESH_CONFIG_NAME} is refused (the last good settings stay in force): ${(e as Error).message}`, `kubectl -n ${NS} edit configmap ${MESH_CONFIG_NAME}`);
      }
    }

    const lease = await this.get<{ spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${CONTROL_PLANE_NAME}`,
    ).catch(() => undefined);
    if (lease?.spec) {
      const { holderIdentity, renewTime, leaseDurationSeconds = 15 } = lease.spec;
      const age = renewTime ? this.now().getTime() - Date.parse(renewTime) : Infinity;
      if (holderIdentity && age <= leaseDurationSeconds * 1000) this.ok(`leader: ${holderIdentity}`);
      else
        this.warn(
          `no replica holds the leader lease${holderIdentity ? ` (${holderIdentity} last renewed it ${human(age)} ago)` : ''}: trust bundles, policy status and the webhook caBundle are not kept current`,
          LOGS,
        );
    }
    return true;
  }

  private async leftoverWebhook(): Promise<void> {
    const mwc = await this.get<{ webhooks?: Webhook[] }>(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION_NAME}`).catch(() => undefined);
    if (mwc && (mwc.webhooks ?? []).some((w) => w.failurePolicy !== 'Ignore'))
      this.fail(
        `MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} is left without a control plane: pods of labelled namespaces cannot be created`,
        `tsmesh install, or kubectl delete mutatingwebhookconfiguration ${WEBHOOK_CONFIGURATION_NAME}`,
      );
  }

  private checkValidity(what: string, c: X509Certificate): boolean {
    const now = this.now().getTime();
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    const until = new Date(to).toISOString().slice(0, 10);
    if (now < from) {
      this.fail(`${what} ${subject(c)} is not valid before ${new Date(from).toISOString()}`, 'check the clocks of the nodes and of the machine that made the certificate');
      return false;
    }
    if (now >= to) {
      this.fail(`${what} ${subject(c)} EXPIRED on ${until}: proxies cannot get or verify certificates`, ROTATE);
      return false;
    }
    if (to - now < this.caExpiryMs) {
      this.fail(`${what} ${subject(c)} expires in ${days(to - now)} (${until})`, what === 'root' ? ROTATE : 'issue a new intermediate from the root and run tsmesh install --ca-dir with it');
      return false;
    }
    this.ok(`${what} ${subject(c)} valid until ${until} (${days(to - now)})`);
    return true;
  }

  private async ca(): Promise<void> {
    let secret: { data?: Record<string, string> } | undefined;
    try {
      secret = await this.get(`/api/v1/namespaces/${NS}/secrets/${CA_SECRET_NAME}`);
    } catch (e) {
      this.warn(`cannot read Secret ${CA_SECRET_NAME}: ${errorText(e)}; the CA is not checked`, `run tsmesh check as a user who may read Secret ${NS}/${CA_SECRET_NAME}`);
      return;
    }
    if (!secret) {
      this.fail(`Secret ${NS}/${CA_SECRET_NAME} is missing: the control plane cannot start`, 'tsmesh install (it creates a new root), or tsmesh install --ca-dir DIR to bring yours');
      return;
    }
    const files: CaFiles = caFilesFromSecret(secret);
    const rootPem = files[CA_FILES.rootCert] ?? '';
    const roots: X509Certificate[] = [];
    for (const [i, p] of splitPemCertificates(rootPem).entries()) {
      try {
        roots.push(new X509Certificate(p));
      } catch (e) {
        this.fail(`root-cert.pem certificate ${i + 1} does not parse: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with a good root-cert.pem');
      }
    }
    if (roots.length === 0) {
      this.fail(`Secret ${CA_SECRET_NAME} holds no root certificate (root-cert.pem)`, 'tsmesh install --ca-dir DIR, or delete the Secret and run tsmesh install to make a new root');
      return;
    }
    this.roots = new Set(roots.map((r) => r.fingerprint256));
    for (const r of roots) {
      if (!r.ca) this.fail(`root ${subject(r)} is not a CA certificate`, 'root-cert.pem must hold CA certificates only');
      else this.checkValidity('root', r);
    }
    const td = `spiffe://${this.trustDomain}`;
    const tdOf = (c: X509Certificate): string | undefined => /URI:(spiffe:\/\/[^,/\s]+)/.exec(c.subjectAltName ?? '')?.[1];

    if (files[CA_FILES.caCert]) {
      let signer: X509Certificate;
      try {
        signer = new X509Certificate(files[CA_FILES.caCert]!);
      } catch (e) {
        this.fail(`ca-cert.pem does not parse: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with a good ca-cert.pem');
        return;
      }
      this.checkValidity('intermediate', signer);
      const chain = [signer, ...splitPemCertificates(files[CA_FILES.certChain] ?? '').map((p) => new X509Certificate(p))];
      for (const c of chain.slice(1)) this.checkValidity('intermediate', c);
      const top = chain[chain.length - 1]!;
      const linked = chain.every((c, i) => i === 0 || (chain[i - 1]!.checkIssued(c) && chain[i - 1]!.verify(c.publicKey)));
      const anchored = roots.some((r) => (top.checkIssued(r) && top.verify(r.publicKey)) || r.fingerprint256 === top.fingerprint256);
      if (!linked || !anchored) this.fail('the intermediate (ca-cert.pem, cert-chain.pem) does not chain to a root of root-cert.pem: proxies will not trust the certificates it signs', 'tsmesh install --ca-dir DIR with a consistent CA folder');
      else this.ok(`workload certificates are signed by the intermediate ${subject(signer)}, which chains to the root`);
      try {
        if (!signer.checkPrivateKey(createPrivateKey(files[CA_FILES.caKey] ?? ''))) this.fail('ca-key.pem is not the key of ca-cert.pem', 'tsmesh install --ca-dir DIR with the matching key');
      } catch (e) {
        this.fail(`ca-key.pem: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with the intermediate\'s key');
      }
      if (tdOf(signer) && tdOf(signer) !== td) this.warn(`the intermediate is for ${tdOf(signer)}, the control plane for ${td}`, 'use a CA made for the mesh\'s trust domain (tsmesh ca init --trust-domain)');
    } else {
      let key;
      try {
        key = createPrivateKey(files[CA_FILES.rootKey] ?? '');
      } catch (e) {
        this.fail(`root-key.pem: ${(e as Error).message}`, 'the Secret needs root-key.pem, or ca-cert.pem with ca-key.pem (tsmesh install --ca-dir DIR)');
        return;
      }
      const signer = roots.find((r) => r.checkPrivateKey(key));
      if (!signer) this.fail('root-key.pem is the key of none of the roots in root-cert.pem: the control plane cannot start', 'tsmesh install --ca-dir DIR with the matching key');
      else {
        this.ok(`workload certificates are signed by the root ${subject(signer)}`);
        if (tdOf(signer) && tdOf(signer) !== td) this.warn(`the root is for ${tdOf(signer)}, the control plane for ${td}`, 'use a CA made for the mesh\'s trust domain (tsmesh ca init --trust-domain)');
      }
    }
  }

  private async webhook(): Promise<void> {
    const mwc = await this.get<{ webhooks?: Webhook[] }>(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION_NAME}`);
    if (!mwc) {
      this.fail(`MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} is missing: new pods are not injected`, 'tsmesh install');
    } else {
      for (const w of mwc.webhooks ?? []) {
        const svc = w.clientConfig?.service;
        if (!svc || svc.name !== CONTROL_PLANE_NAME || svc.namespace !== NS)
          this.warn(`webhook ${w.name} calls ${svc ? `${svc.namespace}/${svc.name}` : (w.clientConfig?.url ?? 'nothing')}, not Service ${NS}/${CONTROL_PLANE_NAME}`, 'tsmesh install');
        const bundle = w.clientConfig?.caBundle;
        if (!bundle) this.fail(`webhook ${w.name} has no caBundle: the API server cannot call it (the control plane sets it when it starts)`, LOGS);
        else if (this.roots && !sameSet(fingerprints(Buffer.from(bundle, 'base64').toString('utf8')), this.roots))
          this.fail(`webhook ${w.name}: its caBundle is not the mesh's roots, so the API server does not trust the injector`, `${LOGS} (the control plane keeps the caBundle current; a restart sets it at once)`);
        else this.ok(`webhook ${w.name}: caBundle set${this.roots ? ' to the mesh roots' : ''}, failurePolicy ${w.failurePolicy ?? 'Fail'}`);
      }
    }

    // The injector itself, through the API server's service proxy.
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: randomUUID(),
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        operation: 'CREATE',
        namespace: 'tsmesh-check',
        dryRun: true,
        userInfo: { username: 'tsmesh-check' },
        object: checkPod(),
      },
    };
    try {
      const res = await this.kube.request('POST', `/api/v1/namespaces/${NS}/services/https:${CONTROL_PLANE_NAME}:https-webhook/proxy/inject`, { body: review, timeoutMs: this.timeoutMs });
      const response = (res.body as { response?: { allowed?: boolean; patch?: string; status?: { message?: string } } } | undefined)?.response;
      const patch = response?.patch ? Buffer.from(response.patch, 'base64').toString('utf8') : '';
      if (response?.allowed && patch.includes(PROXY_CONTAINER)) this.ok('the injector answers and adds the proxy (a sample pod, through the API server\'s service proxy)');
      else this.fail(`the injector answered without adding the proxy: ${response?.status?.message ?? JSON.stringify(response ?? res.body).slice(0, 300)}`, LOGS);
    } catch (e) {
      if (forbidden(e)) this.warn(`cannot call the injector: ${errorText(e)}`, 'tsmesh check needs the services/proxy permission in tsmesh-system');
      else this.fail(`the injector does not answer: ${e instanceof KubeError ? e.apiMessage.trim() : (e as Error).message}`, LOGS);
    }
  }

  /** A server dry run of a pod in a meshed namespace: the whole admission path, as for a real pod. */
  private async admission(namespace: string): Promise<void> {
    try {
      const res = await this.kube.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`, { body: checkPod(), query: { dryRun: 'All', fieldManager: 'tsmesh-check' }, timeoutMs: this.timeoutMs * 3 });
      const pod = res.body as Pod;
      const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
      if (names.includes(PROXY_CONTAINER) && names.includes(INIT_CONTAINER)) this.ok(`a pod created in namespace ${namespace} (server dry run) gets ${INIT_CONTAINER} and ${PROXY_CONTAINER}`);
      else this.fail(`a pod created in namespace ${namespace} (server dry run) is not injected`, `kubectl get mutatingwebhookconfiguration ${WEBHOOK_CONFIGURATION_NAME} -o yaml (namespaceSelector, objectSelector); ${LOGS}`);
    } catch (e) {
      if (forbidden(e)) {
        this.warn(`cannot try a pod in namespace ${namespace}: ${errorText(e)}`, `run tsmesh check as a user who may create pods in ${namespace}`);
        return;
      }
      const text = e instanceof KubeError ? e.apiMessage : (e as Error).message;
      const fix = /PodSecurity|pod security/i.test(text)
        ? `${INIT_CONTAINER} needs NET_ADMIN and NET_RAW, which Pod Security "baseline" and "restricted" forbid: kubectl label namespace ${namespace} pod-security.kubernetes.io/enforce=privileged --overwrite`
        : /webhook/i.test(text)
          ? `the API server cannot call the injector: see the caBundle and injector lines above; ${LOGS}`
          : `kubectl -n ${namespace} get events`;
      this.fail(`a pod created in namespace ${namespace} (server dry run) is refused: ${text.trim()}`, fix);
    }
  }

  private async dataPlane(): Promise<void> {
    const list = await this.get<List<Obj>>('/api/v1/namespaces', { labelSelector: `${INJECT_LABEL}=${INJECT_ENABLED}` });
    const namespaces = (list?.items ?? [])
      .map((n) => n.metadata?.name ?? '')
      .filter((n) => n !== '' && !SYSTEM_NAMESPACES.includes(n))
      .sort();
    if (namespaces.length === 0) {
      this.warn(`no namespace is labelled ${INJECT_LABEL}=${INJECT_ENABLED}: no pod is meshed`, `kubectl label namespace NAME ${INJECT_LABEL}=${INJECT_ENABLED}, then restart its workloads`);
      return;
    }
    this.ok(`${namespaces.length} namespace${namespaces.length === 1 ? '' : 's'} labelled for injection: ${namespaces.join(', ')}`);
    await this.admission(namespaces[0]!);

    const probes: { namespace: string; pod: string }[] = [];
    for (const ns of namespaces) {
      const cm = await this.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${TRUST_BUNDLE_CONFIGMAP}`);
      if (!cm?.data?.[TRUST_BUNDLE_KEY]) this.fail(`namespace ${ns} has no ConfigMap ${TRUST_BUNDLE_CONFIGMAP}: its meshed pods cannot start`, `the control plane writes it; ${LOGS}`);
      else if (this.roots && !sameSet(fingerprints(cm.data[TRUST_BUNDLE_KEY]), this.roots))
        this.fail(`namespace ${ns}: ConfigMap ${TRUST_BUNDLE_CONFIGMAP} differs from the mesh roots`, `the control plane updates it; ${LOGS}`);

      const pods = (await this.get<List<Pod>>(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods`))?.items ?? [];
      let meshed = 0;
      let readyProxies = 0;
      let unmeshed = 0;
      for (const pod of pods) {
        if (pod.status?.phase !== 'Running') continue;
        const name = pod.metadata?.name ?? '';
        const optedOut = pod.metadata?.labels?.[INJECT_LABEL] === INJECT_DISABLED || pod.metadata?.annotations?.[INJECT_LABEL] === INJECT_DISABLED;
        if (pod.metadata?.annotations?.[STATUS_ANNOTATION] === undefined) {
          if (!optedOut && !pod.spec?.hostNetwork) {
            unmeshed++;
            const workload = workloadOf(pod);
            this.warn(
              `pod ${ns}/${name} runs without a proxy (created before the namespace was labelled, or while the injector was unavailable)`,
              workload ? `kubectl -n ${ns} rollout restart ${workload}` : `kubectl -n ${ns} delete pod ${name} (its controller makes a new, injected one)`,
            );
          }
          continue;
        }
        meshed++;
        const st = [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])].find((c) => c.name === PROXY_CONTAINER);
        if (!st?.ready) {
          const why = st?.state?.waiting?.reason ?? st?.state?.terminated?.reason ?? (st ? 'not ready' : 'no status yet');
          this.fail(`pod ${ns}/${name}: proxy not ready (${why}${st?.restartCount ? `, ${st.restartCount} restarts` : ''})`, `kubectl -n ${ns} logs ${name} -c ${PROXY_CONTAINER}; kubectl -n ${ns} describe pod ${name}`);
          continue;
        }
        readyProxies++;
        probes.push({ namespace: ns, pod: name });
      }
      if (meshed > 0 && readyProxies === meshed) this.ok(`namespace ${ns}: ${meshed} meshed pod${meshed === 1 ? '' : 's'}, every proxy ready`);
      else if (meshed === 0 && unmeshed === 0) this.ok(`namespace ${ns}: no running pod yet`);
    }
    if (this.opts.proxyMetrics === false || probes.length === 0) return;

    const minRemaining = this.certTtlMs * PROXY_CERT_MIN_REMAINING;
    const results = await pool(probes, this.opts.concurrency ?? 8, async (p) => {
      try {
        const res = await this.kube.request('GET', `/api/v1/namespaces/${encodeURIComponent(p.namespace)}/pods/${encodeURIComponent(p.pod)}:${PROXY_DEFAULTS.ADMIN_PORT}/proxy/metrics`, { timeoutMs: this.timeoutMs });
        return { ...p, expiry: certExpiryFromMetrics(res.text) };
      } catch (e) {
        return { ...p, error: errorText(e) };
      }
    });
    let good = 0;
    let soonest = Infinity;
    for (const r of results) {
      const where = `pod ${r.namespace}/${r.pod}`;
      const logs = `kubectl -n ${r.namespace} logs ${r.pod} -c ${PROXY_CONTAINER} (renewal errors), and the CA lines above`;
      if ('error' in r) {
        this.warn(`${where}: cannot read the proxy's metrics: ${r.error}`, 'tsmesh check reads them through the API server\'s pod proxy (pods/proxy permission); --no-proxy-metrics skips this');
      } else if (r.expiry === undefined) {
        this.warn(`${where}: the proxy reports no certificate expiry (tsmesh_identity_cert_expiration_timestamp_seconds)`, logs);
      } else {
        const left = r.expiry * 1000 - this.now().getTime();
        if (left <= 0) this.fail(`${where}: the proxy's certificate EXPIRED ${human(-left)} ago`, logs);
        else if (left < minRemaining) this.fail(`${where}: the proxy's certificate expires in ${human(left)}; proxies renew at half-life, so renewal is failing`, logs);
        else {
          good++;
          soonest = Math.min(soonest, left);
        }
      }
    }
    if (good > 0) this.ok(`${good} prox${good === 1 ? 'y holds a certificate' : 'ies hold certificates'} with at least ${human(soonest)} left`);
  }
}

/** The pod `tsmesh check` asks the injector about (never created: a review or a server dry run). */
function checkPod(): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'tsmesh-check-', labels: { 'app.kubernetes.io/name': 'tsmesh-check' } },
    spec: {
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'check',
          image: 'registry.k8s.io/pause:3.10',
          ports: [{ containerPort: 8080 }],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        },
      ],
    },
  };
}

export async function runChecks(kube: Kube, opts: CheckOptions = {}): Promise<CheckLine[]> {
  return new Checker(kube, opts).run();
}

const MARK: Record<CheckStatus, string> = { ok: '[ok]  ', warn: '[warn]', fail: '[FAIL]' };

/** The report as text: sections, one line per check, `fix:` under each problem, a summary. */
export function formatChecks(lines: readonly CheckLine[]): string {
  const out: string[] = [];
  let section = '';
  for (const l of lines) {
    if (l.section !== section) {
      section = l.section;
      out.push(out.length > 0 ? `\n${section}` : section);
    }
    out.push(`  ${MARK[l.status]} ${l.message}`);
    if (l.fix) out.push(`         fix: ${l.fix}`);
  }
  const count = (s: CheckStatus): number => lines.filter((l) => l.status === s).length;
  out.push('', `${count('fail') > 0 ? 'tsmesh check: FAILED' : 'tsmesh check: healthy'} (${count('ok')} ok, ${count('warn')} warnings, ${count('fail')} failures)`);
  return out.join('\n') + '\n';
}

export function checksFailed(lines: readonly CheckLine[]): boolean {
  return lines.some((l) => l.status === 'fail');
}
