// Section Webhook, and the admission path: the MutatingWebhookConfiguration
// calls the control plane's Service and trusts the mesh's roots, the injector
// answers a sample AdmissionReview (through the API server's service proxy),
// and a pod created in a meshed namespace (a server dry run) gets the
// proxy. Without a control plane, a webhook left behind blocks pod creation.
import { randomUUID } from 'node:crypto';
import { CONTROL_PLANE_NAME, INIT_CONTAINER, PROXY_CONTAINER, WEBHOOK_CONFIGURATION_NAME } from '../../contract/names.js';
import { podCreateReview, readAdmissionAnswer } from '../../webhook/admission.js';
import { KubeError } from '../kube.js';
import { fingerprints, sameSet } from './ca.js';
import { errorText, forbidden, LOGS, NS, type CheckContext } from './context.js';
import type { Pod, Webhook } from './objects.js';

const WEBHOOK_PATH = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION_NAME}`;

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

/** The webhook configuration and the injector behind it. */
export async function checkWebhook(ctx: CheckContext): Promise<void> {
  const mwc = await ctx.get<{ webhooks?: Webhook[] }>(WEBHOOK_PATH);
  if (!mwc) {
    ctx.fail(`MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} is missing: new pods are not injected`, 'tsmesh install');
  } else {
    for (const w of mwc.webhooks ?? []) {
      const svc = w.clientConfig?.service;
      if (!svc || svc.name !== CONTROL_PLANE_NAME || svc.namespace !== NS)
        ctx.warn(`webhook ${w.name} calls ${svc ? `${svc.namespace}/${svc.name}` : (w.clientConfig?.url ?? 'nothing')}, not Service ${NS}/${CONTROL_PLANE_NAME}`, 'tsmesh install');
      const bundle = w.clientConfig?.caBundle;
      if (!bundle) ctx.fail(`webhook ${w.name} has no caBundle: the API server cannot call it (the control plane sets it when it starts)`, LOGS);
      else if (ctx.roots && !sameSet(fingerprints(Buffer.from(bundle, 'base64').toString('utf8')), ctx.roots))
        ctx.fail(`webhook ${w.name}: its caBundle is not the mesh's roots, so the API server does not trust the injector`, `${LOGS} (the control plane keeps the caBundle current; a restart sets it at once)`);
      else ctx.ok(`webhook ${w.name}: caBundle set${ctx.roots ? ' to the mesh roots' : ''}, failurePolicy ${w.failurePolicy ?? 'Fail'}`);
    }
  }

  // The injector itself, through the API server's service proxy.
  const review = podCreateReview(checkPod(), { uid: randomUUID(), namespace: 'tsmesh-check', dryRun: true, username: 'tsmesh-check' });
  try {
    const res = await ctx.kube.request('POST', `/api/v1/namespaces/${NS}/services/https:${CONTROL_PLANE_NAME}:https-webhook/proxy/inject`, { body: review, timeoutMs: ctx.timeoutMs });
    const answer = readAdmissionAnswer(res.body);
    if (answer.allowed && JSON.stringify(answer.patch ?? null).includes(PROXY_CONTAINER)) ctx.ok('the injector answers and adds the proxy (a sample pod, through the API server\'s service proxy)');
    else ctx.fail(`the injector answered without adding the proxy: ${answer.message ?? JSON.stringify(res.body).slice(0, 300)}`, LOGS);
  } catch (e) {
    if (forbidden(e)) ctx.warn(`cannot call the injector: ${errorText(e)}`, 'tsmesh check needs the services/proxy permission in tsmesh-system');
    else ctx.fail(`the injector does not answer: ${e instanceof KubeError ? e.apiMessage.trim() : (e as Error).message}`, LOGS);
  }
}

/** tsmesh is not installed: a webhook configuration left behind (failurePolicy other than Ignore) blocks pod creation. */
export async function checkLeftoverWebhook(ctx: CheckContext): Promise<void> {
  const mwc = await ctx.get<{ webhooks?: Webhook[] }>(WEBHOOK_PATH).catch(() => undefined);
  if (mwc && (mwc.webhooks ?? []).some((w) => w.failurePolicy !== 'Ignore'))
    ctx.fail(
      `MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION_NAME} is left without a control plane: pods of labelled namespaces cannot be created`,
      `tsmesh install, or kubectl delete mutatingwebhookconfiguration ${WEBHOOK_CONFIGURATION_NAME}`,
    );
}

/** A server dry run of a pod in a meshed namespace: the whole admission path, as for a real pod. */
export async function checkAdmission(ctx: CheckContext, namespace: string): Promise<void> {
  try {
    const res = await ctx.kube.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`, { body: checkPod(), query: { dryRun: 'All', fieldManager: 'tsmesh-check' }, timeoutMs: ctx.timeoutMs * 3 });
    const pod = res.body as Pod;
    const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
    if (names.includes(PROXY_CONTAINER) && names.includes(INIT_CONTAINER)) ctx.ok(`a pod created in namespace ${namespace} (server dry run) gets ${INIT_CONTAINER} and ${PROXY_CONTAINER}`);
    else ctx.fail(`a pod created in namespace ${namespace} (server dry run) is not injected`, `kubectl get mutatingwebhookconfiguration ${WEBHOOK_CONFIGURATION_NAME} -o yaml (namespaceSelector, objectSelector); ${LOGS}`);
  } catch (e) {
    if (forbidden(e)) {
      ctx.warn(`cannot try a pod in namespace ${namespace}: ${errorText(e)}`, `run tsmesh check as a user who may create pods in ${namespace}`);
      return;
    }
    const text = e instanceof KubeError ? e.apiMessage : (e as Error).message;
    const fix = /PodSecurity|pod security/i.test(text)
      ? `${INIT_CONTAINER} needs NET_ADMIN and NET_RAW, which Pod Security "baseline" and "restricted" forbid: kubectl label namespace ${namespace} pod-security.kubernetes.io/enforce=privileged --overwrite`
      : /webhook/i.test(text)
        ? `the API server cannot call the injector: see the caBundle and injector lines above; ${LOGS}`
        : `kubectl -n ${namespace} get events`;
    ctx.fail(`a pod created in namespace ${namespace} (server dry run) is refused: ${text.trim()}`, fix);
  }
}
