// Section Control plane: tsmesh-system and the CRDs exist (the Gateway API's
// with their bundle-version), the Deployment has
// available replicas, its Service has ready endpoints, the control plane
// answers /readyz (through the API server's service proxy), tsmesh-config is
// accepted, and a replica holds the leader lease.
import { CONTROL_PLANE_NAME } from '../../contract/names.js';
import { deploymentPath, rolloutPending } from '../apply.js';
import { KubeError } from '../kube.js';
import { checkMeshConfig, readControlPlaneFlags } from './config.js';
import { errorText, forbidden, human, LOGS, NS, type CheckContext } from './context.js';
import { checkGatewayApiCrds } from './gateway-api.js';
import type { Deployment, List } from './objects.js';

export const CRD_NAMES = ['trafficpolicies.tsmesh.io', 'authorizationpolicies.tsmesh.io'] as const;

/** False when tsmesh is not installed (or tsmesh-system cannot be read): the CA, webhook and data plane are not checked. */
export async function checkControlPlane(ctx: CheckContext): Promise<boolean> {
  try {
    if (!(await ctx.get(`/api/v1/namespaces/${NS}`))) {
      ctx.fail(`namespace ${NS} does not exist: tsmesh is not installed`, 'tsmesh install');
      return false;
    }
  } catch (e) {
    ctx.fail(`cannot read namespace ${NS}: ${errorText(e)}`, 'tsmesh check needs read access to the tsmesh-system namespace and the cluster-wide objects of tsmesh (a cluster admin has it)');
    return false;
  }
  ctx.ok(`namespace ${NS} exists`);

  let crdsOk = true;
  for (const name of CRD_NAMES) {
    type Crd = { status?: { conditions?: { type: string; status: string }[] } };
    const crd: Crd | undefined | Error = await ctx.get<Crd>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    if (crd instanceof Error) ctx.warn(`cannot read CustomResourceDefinition ${name}: ${errorText(crd)}`, 'run tsmesh check as a user who may read CRDs');
    else if (!crd) ctx.fail(`CustomResourceDefinition ${name} is missing: its policies are not served`, 'tsmesh install');
    else if (!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) ctx.fail(`CustomResourceDefinition ${name} is not established`, `kubectl describe crd ${name}`);
    else continue;
    crdsOk = false;
  }
  if (crdsOk) ctx.ok(`CustomResourceDefinitions ${CRD_NAMES.join(', ')} are served`);
  await checkGatewayApiCrds(ctx);

  const deployment = await ctx.get<Deployment>(deploymentPath);
  if (!deployment) {
    ctx.fail(`Deployment ${NS}/${CONTROL_PLANE_NAME} does not exist`, 'tsmesh install');
    return true;
  }
  readControlPlaneFlags(ctx, deployment.spec?.template?.spec?.containers?.find((c) => c.name === 'control-plane') ?? deployment.spec?.template?.spec?.containers?.[0]);
  const want = deployment.spec?.replicas ?? 1;
  const available = deployment.status?.availableReplicas ?? 0;
  const pending = rolloutPending(deployment);
  const describe = `kubectl -n ${NS} describe deployment ${CONTROL_PLANE_NAME}; ${LOGS}`;
  if (available === 0) ctx.fail(`Deployment ${CONTROL_PLANE_NAME}: no replica is available (${pending ?? 'none ready'})`, describe);
  else if (pending) ctx.warn(`Deployment ${CONTROL_PLANE_NAME}: ${available} of ${want} replicas available (${pending})`, describe);
  else ctx.ok(`Deployment ${CONTROL_PLANE_NAME}: ${available}/${want} replicas available`);

  const slices = await ctx.get<List<{ endpoints?: { addresses?: string[]; conditions?: { ready?: boolean } }[] }>>(`/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
    labelSelector: `kubernetes.io/service-name=${CONTROL_PLANE_NAME}`,
  });
  const ready = (slices?.items ?? []).flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length;
  if (ready === 0) ctx.fail(`Service ${CONTROL_PLANE_NAME} has no ready endpoint: the CA, discovery and the webhook are unreachable`, describe);
  else ctx.ok(`Service ${CONTROL_PLANE_NAME} has ${ready} ready endpoint${ready === 1 ? '' : 's'}`);

  if (ready > 0) {
    const path = `/api/v1/namespaces/${NS}/services/http:${CONTROL_PLANE_NAME}:http-admin/proxy/readyz`;
    try {
      await ctx.kube.request('GET', path, { timeoutMs: ctx.timeoutMs });
      ctx.ok('the control plane answers /readyz: ready');
    } catch (e) {
      if (forbidden(e)) ctx.warn(`cannot ask the control plane's /readyz: ${errorText(e)}`, 'tsmesh check needs the services/proxy permission in tsmesh-system');
      else ctx.fail(`the control plane's /readyz: ${e instanceof KubeError ? e.apiMessage.trim() : (e as Error).message}`, LOGS);
    }
  }

  await checkMeshConfig(ctx);

  const lease = await ctx.get<{ spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number } }>(
    `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${CONTROL_PLANE_NAME}`,
  ).catch(() => undefined);
  if (lease?.spec) {
    const { holderIdentity, renewTime, leaseDurationSeconds = 15 } = lease.spec;
    const age = renewTime ? ctx.now().getTime() - Date.parse(renewTime) : Infinity;
    if (holderIdentity && age <= leaseDurationSeconds * 1000) ctx.ok(`leader: ${holderIdentity}`);
    else
      ctx.warn(
        `no replica holds the leader lease${holderIdentity ? ` (${holderIdentity} last renewed it ${human(age)} ago)` : ''}: trust bundles, policy status and the webhook caBundle are not kept current`,
        LOGS,
      );
  }
  return true;
}
