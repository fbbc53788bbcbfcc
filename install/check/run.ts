// `tsmesh check`: is the mesh healthy? Everything is read through the
// Kubernetes API with the user's credentials; the control plane and the
// proxies are reached through the API server's service and pod proxy
// (services/<name>:<port>/proxy, pods/<name>:15020/proxy), so no
// port-forward is needed. Every failing line says how to fix it.
//
// This file is the order of the sections; each section is a file of its own
// (cluster, control-plane with config, ca, webhook, data-plane), and
// report.ts is what a line is and how the report prints.
import type { Kube } from '../kube.js';
import { checkCa } from './ca.js';
import { checkKubernetes } from './cluster.js';
import { CheckContext, type CheckOptions } from './context.js';
import { checkControlPlane } from './control-plane.js';
import { checkDataPlane } from './data-plane.js';
import type { CheckLine } from './report.js';
import { checkLeftoverWebhook, checkWebhook } from './webhook.js';

export async function runChecks(kube: Kube, opts: CheckOptions = {}): Promise<CheckLine[]> {
  const ctx = new CheckContext(kube, opts);
  ctx.section = 'Kubernetes';
  if (!(await checkKubernetes(ctx))) return ctx.lines;
  ctx.section = 'Control plane';
  if (!(await checkControlPlane(ctx))) {
    ctx.section = 'Webhook';
    await checkLeftoverWebhook(ctx);
    return ctx.lines;
  }
  ctx.section = 'CA';
  await checkCa(ctx);
  ctx.section = 'Webhook';
  await checkWebhook(ctx);
  ctx.section = 'Data plane';
  await checkDataPlane(ctx);
  return ctx.lines;
}
