// Test helpers for the real-API-server tier: start a fresh etcd +
// kube-apiserver with test/cluster/apiserver.sh, and small wrappers for the
// API objects tests need (namespaces, service accounts, TokenRequest,
// TokenReview, mutating webhooks).
//
// Binaries are built by test/cluster/build.sh; when they are missing the tier
// is skipped with a message saying how to build them (see apiServerTier()).

import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AdmissionregistrationV1Api,
  ApiException,
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1LabelSelector,
  type V1RuleWithOperations,
  type V1ServiceAccount,
  type V1TokenReviewStatus,
} from '@kubernetes/client-node';

const execFileP = promisify(execFile);

const here = dirname(fileURLToPath(import.meta.url));
export const clusterDir = resolve(here, '..', 'cluster');
export const apiServerScript = join(clusterDir, 'apiserver.sh');
export const buildScript = join(clusterDir, 'build.sh');

/** Folder holding etcd, kube-apiserver and kube-controller-manager. */
export function clusterBinDir(): string {
  return process.env['TSMESH_CLUSTER_BIN'] ?? join(process.env['TSMESH_CLUSTER_CACHE'] ?? join(clusterDir, '.cache'), 'bin');
}

/** The issuer the test API server puts into service account tokens. */
export const serviceAccountIssuer = 'https://kubernetes.default.svc.cluster.local';
/** Audience of the tokens the mesh CA accepts. */
export const meshAudience = 'tsmesh-ca';

export interface TierStatus {
  ok: boolean;
  /** Why the tier cannot run (empty when ok). */
  reason: string;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((d) => d !== '' && isExecutable(join(d, cmd)));
}

/**
 * Tells whether the API-server tier can run here: Linux, bash, openssl and
 * curl on PATH, and the binaries built. The reason names what is missing and
 * how to get it.
 */
export function apiServerTier(opts: { controllers?: boolean } = {}): TierStatus {
  if (process.platform !== 'linux') return { ok: false, reason: `API server tier needs Linux (this is ${process.platform})` };
  for (const cmd of ['bash', 'openssl', 'curl']) {
    if (!onPath(cmd)) return { ok: false, reason: `API server tier needs ${cmd} on PATH` };
  }
  const bins = ['etcd', 'kube-apiserver', ...(opts.controllers ? ['kube-controller-manager'] : [])];
  for (const b of bins) {
    const p = join(clusterBinDir(), b);
    if (!isExecutable(p)) {
      const haveGo = onPath('go') || isExecutable('/usr/local/go/bin/go');
      return {
        ok: false,
        reason: haveGo
          ? `API server tier skipped: ${p} is not built; run test/cluster/build.sh (takes minutes the first time)`
          : `API server tier skipped: ${p} is not built and Go (>= 1.26) is not installed to build it with test/cluster/build.sh`,
      };
    }
  }
  return { ok: true, reason: '' };
}

/**
 * For a mocha `before` hook: skips the suite, saying why, when this machine
 * has no API-server tier (with the controllers when `controllers` is set).
 */
export function skipWithoutApiServer(ctx: Mocha.Context, opts: { controllers?: boolean } = {}): void {
  const tier = apiServerTier(opts);
  if (!tier.ok) {
    console.log(`      ${tier.reason}`);
    ctx.skip();
  }
}

export interface ApiServer {
  /** Path of an admin kubeconfig (client certificate in group system:masters). */
  kubeconfigPath: string;
  /** The same kubeconfig, loaded. */
  kc: KubeConfig;
  /** https://127.0.0.1:<port> */
  url: string;
  /** State folder (certificates, logs, etcd data). */
  dir: string;
  /** Stops the processes and removes the state folder. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Also run kube-controller-manager (namespace deletion, default SAs, EndpointSlices, ...). */
  controllers?: boolean;
  /** State folder; default a fresh temporary folder. */
  dir?: string;
  /** Extra kube-apiserver flags. */
  extraArgs?: string[];
  /** Seconds to wait for /readyz (default 60). */
  timeoutSeconds?: number;
}

function lastValue(stdout: string, key: string): string | undefined {
  const line = stdout
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}

/**
 * Starts a fresh etcd + kube-apiserver on loopback and waits until /readyz
 * answers. The processes are also stopped when this Node process exits (a
 * watchdog started by the script), but callers should call stop() in an
 * `after` hook.
 */
export async function startApiServer(opts: StartOptions = {}): Promise<ApiServer> {
  const tier = apiServerTier({ controllers: opts.controllers ?? false });
  if (!tier.ok) throw new Error(tier.reason);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TSMESH_APISERVER_PARENT_PID: String(process.pid),
    TSMESH_APISERVER_CONTROLLERS: opts.controllers ? '1' : '0',
  };
  // A fresh folder unless one is asked for (never one exported by a shell).
  delete env['TSMESH_APISERVER_DIR'];
  if (opts.extraArgs) env['TSMESH_APISERVER_EXTRA_ARGS'] = opts.extraArgs.join(' ');
  if (opts.timeoutSeconds) env['TSMESH_APISERVER_TIMEOUT'] = String(opts.timeoutSeconds);
  const args = [apiServerScript, 'start', ...(opts.dir ? [opts.dir] : [])];
  let stdout: string;
  try {
    ({ stdout } = await execFileP('bash', args, { env, maxBuffer: 1 << 20 }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`test/cluster/apiserver.sh start failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
  const kubeconfigPath = lastValue(stdout, 'KUBECONFIG');
  const dir = lastValue(stdout, 'TSMESH_APISERVER_DIR');
  const url = lastValue(stdout, 'TSMESH_APISERVER_URL');
  if (!kubeconfigPath || !dir || !url) throw new Error(`unexpected output from apiserver.sh start:\n${stdout}`);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= execFileP('bash', [apiServerScript, 'stop', dir]).then(() => undefined);
    return stopped;
  };
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(kubeconfigPath);
  } catch (err) {
    await stop();
    throw err;
  }
  return { kubeconfigPath, kc, url, dir, stop };
}

/** True when err is an API error with the given HTTP status. */
export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

export async function createNamespace(kc: KubeConfig, name: string, labels: Record<string, string> = {}): Promise<V1Namespace> {
  return kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name, labels } } });
}

export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespace({ name });
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
}

export async function createServiceAccount(kc: KubeConfig, namespace: string, name: string): Promise<V1ServiceAccount> {
  return kc.makeApiClient(CoreV1Api).createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

export async function deleteServiceAccount(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespacedServiceAccount({ namespace, name });
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
}

/**
 * Asks the TokenRequest API for a token of a service account (what kubelet
 * puts into a projected volume). expirationSeconds must be >= 600.
 */
export async function requestToken(
  kc: KubeConfig,
  namespace: string,
  serviceAccount: string,
  audience: string | string[],
  expirationSeconds = 3600,
): Promise<{ token: string; expiration: Date }> {
  const audiences = Array.isArray(audience) ? audience : [audience];
  const res = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    namespace,
    name: serviceAccount,
    body: { spec: { audiences, expirationSeconds } },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
  return { token, expiration: new Date(res.status?.expirationTimestamp ?? 0) };
}

/** Reviews a token with the TokenReview API, as the mesh CA does. */
export async function reviewToken(kc: KubeConfig, token: string, audiences?: string[]): Promise<V1TokenReviewStatus> {
  const res = await kc.makeApiClient(AuthenticationV1Api).createTokenReview({
    body: { spec: { token, ...(audiences ? { audiences } : {}) } },
  });
  return res.status ?? {};
}

export interface MutatingWebhookOptions {
  /** Name of the MutatingWebhookConfiguration and (with a suffix if needed) of its one webhook. */
  name: string;
  /** https URL the API server calls (URL form of clientConfig). */
  url: string;
  /** PEM of the CA that signed the webhook's serving certificate. */
  caBundle: string | Buffer;
  namespaceSelector?: V1LabelSelector;
  objectSelector?: V1LabelSelector;
  failurePolicy?: 'Fail' | 'Ignore';
  /** Default: CREATE of v1 pods. */
  rules?: V1RuleWithOperations[];
  timeoutSeconds?: number;
  reinvocationPolicy?: 'Never' | 'IfNeeded';
}

/** Registers (or replaces) a MutatingWebhookConfiguration with one webhook. */
export async function registerMutatingWebhook(kc: KubeConfig, o: MutatingWebhookOptions): Promise<V1MutatingWebhookConfiguration> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const caBundle = Buffer.from(o.caBundle).toString('base64');
  const body: V1MutatingWebhookConfiguration = {
    metadata: { name: o.name },
    webhooks: [
      {
        // A webhook's name must be a fully qualified domain name.
        name: o.name.includes('.') ? o.name : `${o.name}.tsmesh.io`,
        clientConfig: { url: o.url, caBundle },
        rules: o.rules ?? [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: o.failurePolicy ?? 'Fail',
        timeoutSeconds: o.timeoutSeconds ?? 10,
        reinvocationPolicy: o.reinvocationPolicy ?? 'Never',
        ...(o.namespaceSelector ? { namespaceSelector: o.namespaceSelector } : {}),
        ...(o.objectSelector ? { objectSelector: o.objectSelector } : {}),
      },
    ],
  };
  try {
    await api.deleteMutatingWebhookConfiguration({ name: o.name });
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
  return api.createMutatingWebhookConfiguration({ body });
}

export async function deleteMutatingWebhook(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(AdmissionregistrationV1Api).deleteMutatingWebhookConfiguration({ name });
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
}

/** Polls fn until it returns a value other than undefined, or throws after timeoutMs. */
export async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
