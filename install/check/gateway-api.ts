// In section Control plane: the Gateway API CRDs the control plane routes by
// (HTTPRoute, GRPCRoute, ReferenceGrant), their bundle-version and channel
// beside the release tsmesh install brings.
import { GATEWAY_API_BUNDLE_VERSION, GATEWAY_API_BUNDLE_VERSION_ANNOTATION, GATEWAY_API_CHANNEL_ANNOTATION, GATEWAY_API_GROUP, GATEWAY_API_PLURALS } from '../../contract/names.js';
import { compareBundleVersions } from '../apply.js';
import { errorText, type CheckContext } from './context.js';
import type { Obj } from './objects.js';

export const GATEWAY_API_CRD_NAMES = Object.values(GATEWAY_API_PLURALS).map((p) => `${p}.${GATEWAY_API_GROUP}`);

export async function checkGatewayApiCrds(ctx: CheckContext): Promise<void> {
  const found: { name: string; version: string; channel: string }[] = [];
  for (const name of GATEWAY_API_CRD_NAMES) {
    let crd: Obj | undefined;
    try {
      crd = await ctx.get<Obj>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    } catch (e) {
      ctx.warn(`cannot read CustomResourceDefinition ${name}: ${errorText(e)}`, 'run tsmesh check as a user who may read CRDs');
      return;
    }
    if (!crd) {
      ctx.warn(`Gateway API CustomResourceDefinition ${name} is missing: the mesh routes by TrafficPolicy only, ${name.split('.')[0]} are not served`, 'tsmesh install (it creates the Gateway API CRDs when absent)');
      return;
    }
    found.push({ name, version: crd.metadata?.annotations?.[GATEWAY_API_BUNDLE_VERSION_ANNOTATION] ?? '', channel: crd.metadata?.annotations?.[GATEWAY_API_CHANNEL_ANNOTATION] ?? '' });
  }
  const versions = [...new Set(found.map((f) => `${f.version || 'no bundle-version'} ${f.channel || 'no channel'}`))];
  if (versions.length > 1) {
    ctx.warn(`the Gateway API CRDs come from different bundles (${found.map((f) => `${f.name}: ${f.version || 'none'} ${f.channel || ''}`.trim()).join('; ')})`, 'install one bundle of the Gateway API for all of them (tsmesh install brings ' + GATEWAY_API_BUNDLE_VERSION + ' standard)');
    return;
  }
  const { version, channel } = found[0]!;
  const order = compareBundleVersions(version, GATEWAY_API_BUNDLE_VERSION);
  if (Number.isNaN(order) || order < 0)
    ctx.warn(`Gateway API CRDs are at bundle-version ${version || '(none)'}, older than ${GATEWAY_API_BUNDLE_VERSION}: route fields of newer releases are not served`, `tsmesh install (it upgrades an older standard-channel bundle), or upgrade the Gateway API CRDs yourself`);
  else ctx.ok(`Gateway API CRDs (${GATEWAY_API_CRD_NAMES.join(', ')}) at bundle-version ${version} ${channel}`);
}
