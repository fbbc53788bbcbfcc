// Section Data plane: namespaces are labelled for injection, a pod created in
// one is injected (webhook.ts), each has its trust bundle (ca.ts), its
// running pods carry ready proxies, and each ready proxy's certificate (from
// its /metrics, through the API server's pod proxy) is renewed in time.
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, PROXY_CONTAINER, STATUS_ANNOTATION, SYSTEM_NAMESPACES } from '../../contract/names.js';
import { PROXY_DEFAULTS } from '../../contract/env.js';
import { checkTrustBundle } from './ca.js';
import { errorText, human, type CheckContext } from './context.js';
import type { List, Obj, Pod } from './objects.js';
import { checkAdmission } from './webhook.js';

/** A proxy renews at half its certificate's life (+-10%); less than a quarter left means renewal is failing. */
export const PROXY_CERT_MIN_REMAINING = 0.25;

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

interface Probe {
  namespace: string;
  pod: string;
}

export async function checkDataPlane(ctx: CheckContext): Promise<void> {
  const list = await ctx.get<List<Obj>>('/api/v1/namespaces', { labelSelector: `${INJECT_LABEL}=${INJECT_ENABLED}` });
  const namespaces = (list?.items ?? [])
    .map((n) => n.metadata?.name ?? '')
    .filter((n) => n !== '' && !SYSTEM_NAMESPACES.includes(n))
    .sort();
  if (namespaces.length === 0) {
    ctx.warn(`no namespace is labelled ${INJECT_LABEL}=${INJECT_ENABLED}: no pod is meshed`, `kubectl label namespace NAME ${INJECT_LABEL}=${INJECT_ENABLED}, then restart its workloads`);
    return;
  }
  ctx.ok(`${namespaces.length} namespace${namespaces.length === 1 ? '' : 's'} labelled for injection: ${namespaces.join(', ')}`);
  await checkAdmission(ctx, namespaces[0]!);

  const probes: Probe[] = [];
  for (const ns of namespaces) {
    await checkTrustBundle(ctx, ns);
    probes.push(...(await checkPods(ctx, ns)));
  }
  if (ctx.opts.proxyMetrics === false || probes.length === 0) return;
  await checkProxyCertificates(ctx, probes);
}

/** The running pods of one meshed namespace; returns those whose proxy is ready. */
async function checkPods(ctx: CheckContext, ns: string): Promise<Probe[]> {
  const probes: Probe[] = [];
  const pods = (await ctx.get<List<Pod>>(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods`))?.items ?? [];
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
        ctx.warn(
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
      ctx.fail(`pod ${ns}/${name}: proxy not ready (${why}${st?.restartCount ? `, ${st.restartCount} restarts` : ''})`, `kubectl -n ${ns} logs ${name} -c ${PROXY_CONTAINER}; kubectl -n ${ns} describe pod ${name}`);
      continue;
    }
    readyProxies++;
    probes.push({ namespace: ns, pod: name });
  }
  if (meshed > 0 && readyProxies === meshed) ctx.ok(`namespace ${ns}: ${meshed} meshed pod${meshed === 1 ? '' : 's'}, every proxy ready`);
  else if (meshed === 0 && unmeshed === 0) ctx.ok(`namespace ${ns}: no running pod yet`);
  return probes;
}

/** Each ready proxy's certificate, read from its metrics: renewal failing shows as less than a quarter of the lifetime left. */
async function checkProxyCertificates(ctx: CheckContext, probes: readonly Probe[]): Promise<void> {
  const minRemaining = ctx.certTtlMs * PROXY_CERT_MIN_REMAINING;
  const results = await pool(probes, ctx.opts.concurrency ?? 8, async (p) => {
    try {
      const res = await ctx.kube.request('GET', `/api/v1/namespaces/${encodeURIComponent(p.namespace)}/pods/${encodeURIComponent(p.pod)}:${PROXY_DEFAULTS.ADMIN_PORT}/proxy/metrics`, { timeoutMs: ctx.timeoutMs });
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
      ctx.warn(`${where}: cannot read the proxy's metrics: ${r.error}`, 'tsmesh check reads them through the API server\'s pod proxy (pods/proxy permission); --no-proxy-metrics skips this');
    } else if (r.expiry === undefined) {
      ctx.warn(`${where}: the proxy reports no certificate expiry (tsmesh_identity_cert_expiration_timestamp_seconds)`, logs);
    } else {
      const left = r.expiry * 1000 - ctx.now().getTime();
      if (left <= 0) ctx.fail(`${where}: the proxy's certificate EXPIRED ${human(-left)} ago`, logs);
      else if (left < minRemaining) ctx.fail(`${where}: the proxy's certificate expires in ${human(left)}; proxies renew at half-life, so renewal is failing`, logs);
      else {
        good++;
        soonest = Math.min(soonest, left);
      }
    }
  }
  if (good > 0) ctx.ok(`${good} prox${good === 1 ? 'y holds a certificate' : 'ies hold certificates'} with at least ${human(soonest)} left`);
}
