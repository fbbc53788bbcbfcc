// Keeps the caBundle of our MutatingWebhookConfiguration equal to the mesh's
// trust bundle, so the API server trusts the injector's serving certificate
// (issued by the mesh CA). RBAC allows get and patch on this one object only.
import { AdmissionregistrationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { WEBHOOK_CONFIGURATION_NAME } from '../contract/names.js';

/** Sets caBundle on every webhook of the configuration; returns how many were changed. */
export async function syncWebhookCaBundle(kc: KubeConfig, trustBundlePem: string, log: Logger, name = WEBHOOK_CONFIGURATION_NAME): Promise<number> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const current = await api.readMutatingWebhookConfiguration({ name });
  const caBundle = Buffer.from(trustBundlePem).toString('base64');
  const ops = (current.webhooks ?? []).flatMap((w, i) =>
    w.clientConfig.caBundle === caBundle ? [] : [{ op: w.clientConfig.caBundle === undefined ? 'add' : 'replace', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle }],
  );
  if (ops.length === 0) return 0;
  await api.patchMutatingWebhookConfiguration({ name, body: ops });
  log.info('set the injector caBundle', { name, webhooks: ops.length });
  return ops.length;
}
