// What the control plane knows of the proxies on its discovery stream, as
// `istioctl proxy-status` and `istioctl proxy-config` show it: who each is,
// where it connects from, the config version sent and the one acknowledged,
// its certificate's expiry; and the config in force in one of them. Served
// as JSON by the admin port (admin.ts), printed by `tsmesh proxy-status` and
// `tsmesh proxy-config`. A replica knows only the streams it serves.
import type { ProxyConfig } from '../contract/proxy-config.js';
import type { SyncState } from '../contract/proxy-status.js';
import { alignColumns } from './observe/stat.js';
import type { ProxyStreamState } from './stream.js';

export const PROXIES_PATH = '/api/v1/proxies';
/** GET PROXY_CONFIG_PATH?proxy=<pod name, address, identity>: the config one proxy acknowledged. */
export const PROXY_CONFIG_PATH = '/api/v1/proxies/config';

/** Where a control plane does not serve PROXIES_PATH. */
export const NOT_SERVED = `the control plane does not serve ${PROXIES_PATH} (404): it runs no discovery stream, or it is an older tsmesh`;

/** Said with every answer: each replica of the control plane serves its own streams. */
export const REPLICA_NOTE = 'this control plane replica knows only the proxies connected to it; with several replicas, ask each one (its pod\'s admin port)';

export interface ProxyStatus {
  /** namespace/ServiceAccount. */
  identity: string;
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
  /** The pod's name, as the proxy gives it; null when it gives none (local mode: the workload is its ServiceAccount). */
  pod: string | null;
  /** The address it connects from: its pod IP in a cluster. */
  address: string;
  sync: SyncState;
  /** The version last sent to it; null before any. */
  sentVersion: string | null;
  sentAt: string | null;
  /** The version it last acknowledged; null before any. */
  ackedVersion: string | null;
  ackedAt: string | null;
  /** When the certificate it last presented expires; null when unknown. */
  certExpiresAt: string | null;
  connectedAt: string;
  /** Its last request to the control plane: the subscription or an acknowledgement. */
  lastSeen: string;
}

export interface ProxyStatusList {
  generatedAt: string;
  note: string;
  proxies: ProxyStatus[];
}

export interface ProxyConfigAnswer {
  proxy: ProxyStatus;
  /** The config it acknowledged last, while it is the last one sent to it; null otherwise (see proxy.sync). */
  config: ProxyConfig | null;
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

export function syncState(s: Pick<ProxyStreamState, 'sent' | 'acked'>): SyncState {
  if (!s.sent) return 'NOT SENT';
  if (!s.acked) return 'NOT ACKED';
  return s.acked.version === s.sent.version ? 'SYNCED' : 'STALE';
}

export function proxyStatus(s: ProxyStreamState): ProxyStatus {
  return {
    identity: `${s.identity.namespace}/${s.identity.serviceAccount}`,
    spiffeId: s.identity.spiffeId,
    namespace: s.identity.namespace,
    serviceAccount: s.identity.serviceAccount,
    pod: s.pod ?? null,
    address: s.address,
    sync: syncState(s),
    sentVersion: s.sent?.version ?? null,
    sentAt: iso(s.sent?.at),
    ackedVersion: s.acked?.version ?? null,
    ackedAt: iso(s.acked?.at),
    certExpiresAt: iso(s.certExpiresAt),
    connectedAt: iso(s.connectedAt)!,
    lastSeen: iso(s.lastSeen)!,
  };
}

const byIdentity = (a: ProxyStatus, b: ProxyStatus): number => `${a.identity} ${a.pod ?? ''} ${a.address}`.localeCompare(`${b.identity} ${b.pod ?? ''} ${b.address}`);

export function proxyStatusList(states: readonly ProxyStreamState[], now = Date.now()): ProxyStatusList {
  return { generatedAt: new Date(now).toISOString(), note: REPLICA_NOTE, proxies: states.map(proxyStatus).sort(byIdentity) };
}

/** What a proxy is asked for by: its pod name, its address, its SPIFFE ID, namespace/ServiceAccount, or its ServiceAccount (a workload in local mode). */
function matches(s: ProxyStreamState, query: string): boolean {
  const { identity } = s;
  return s.pod === query || s.address === query || identity.spiffeId === query || `${identity.namespace}/${identity.serviceAccount}` === query || identity.serviceAccount === query;
}

export type ProxyLookup = { found: ProxyConfigAnswer } | { error: string; status: 400 | 404 | 409 };

/** The config one proxy runs, found by `query`; or why it cannot be told, with the HTTP status to answer. */
export function lookupProxyConfig(states: readonly ProxyStreamState[], query: string | null): ProxyLookup {
  if (query === null || query === '') return { status: 400, error: 'name the proxy: ?proxy=<pod name, pod address, SPIFFE ID, namespace/ServiceAccount or ServiceAccount>' };
  const found = states.filter((s) => matches(s, query));
  if (found.length === 0) {
    const known = states.map((s) => s.pod ?? `${s.identity.namespace}/${s.identity.serviceAccount}@${s.address}`).sort();
    return { status: 404, error: `no proxy connected to this control plane is ${JSON.stringify(query)}; connected: ${known.join(', ') || 'none'} (${REPLICA_NOTE})` };
  }
  if (found.length > 1) {
    const which = found.map((s) => s.pod ?? s.address).sort();
    return { status: 409, error: `${found.length} proxies are ${JSON.stringify(query)} (${which.join(', ')}); name one by its pod name or address` };
  }
  const s = found[0]!;
  const config = s.ackedConfig();
  return { found: { proxy: proxyStatus(s), config: config === undefined ? null : (JSON.parse(config) as ProxyConfig) } };
}

/** How long ago (or until) `at`, short: 12s, 5m, 3h, 2d. */
export function age(at: string | null, now: number): string {
  if (at === null) return '-';
  const s = Math.round((now - Date.parse(at)) / 1000);
  const a = Math.abs(s);
  const text = a < 120 ? `${a}s` : a < 7200 ? `${Math.round(a / 60)}m` : a < 172_800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86_400)}d`;
  return s < 0 ? `in ${text}` : `${text} ago`;
}

/** The proxy-status table. */
export function formatProxyStatusTable(list: ProxyStatusList, now = Date.now()): string[][] {
  const head = ['NAME', 'IDENTITY', 'ADDRESS', 'SYNC', 'SENT', 'ACKED', 'ACKED_AT', 'CERT_EXPIRES', 'LAST_SEEN'];
  return [
    head,
    ...list.proxies.map((p) => [p.pod ?? p.serviceAccount, p.identity, p.address, p.sync, p.sentVersion ?? '-', p.ackedVersion ?? '-', age(p.ackedAt, now), age(p.certExpiresAt, now), age(p.lastSeen, now)]),
  ];
}

/** The short view of one proxy's config: what it is, its services and routes, its inbound policy and mTLS mode. */
export function summarizeProxyConfig(answer: ProxyConfigAnswer, now = Date.now()): string {
  const { proxy, config } = answer;
  const lines = [
    `Proxy:     ${proxy.pod ?? proxy.serviceAccount} (${proxy.identity}, ${proxy.address})`,
    `Version:   ${proxy.ackedVersion ?? '-'} acknowledged ${age(proxy.ackedAt, now)}; ${proxy.sync}${proxy.sync === 'SYNCED' ? '' : ` (last sent ${proxy.sentVersion ?? '-'})`}`,
  ];
  if (config === null) {
    lines.push('', proxy.sync === 'STALE' ? 'It runs an older config than the last sent, which this control plane no longer holds.' : 'It has acknowledged no config on this stream yet.');
    return lines.join('\n');
  }
  const inbound = config.inbound;
  lines.push(
    `mTLS:      ${inbound.mtlsMode ?? config.mesh.mtlsMode}${inbound.mtlsMode ? ' (workload)' : ' (mesh)'}${Object.keys(inbound.portMtlsModes ?? {}).length > 0 ? `; ports ${Object.entries(inbound.portMtlsModes!).map(([p, m]) => `${p}=${m}`).join(', ')}` : ''}`,
    `Inbound:   default policy ${inbound.defaultPolicy ?? config.mesh.defaultInboundPolicy ?? 'all-authenticated'}; authorization policies ${(inbound.authorization ?? []).map((a) => `${a.name} (${a.action ?? 'ALLOW'})`).join(', ') || 'none'}`,
    '',
  );
  const rows = [['SERVICE', 'PORTS', 'ENDPOINTS', 'POLICY', 'ROUTES']];
  for (const s of [...config.services].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))) {
    const policy = s.trafficPolicy;
    // As http/route.ts names them: route-<index> for an unnamed one, and default after a last one that matches only some requests.
    const routes = (policy?.routes ?? []).map((r, i) => r.name ?? `route-${i}`);
    if (policy && (policy.routes?.at(-1)?.match !== undefined || routes.length === 0)) routes.push('default');
    rows.push([
      `${s.name}.${s.namespace}`,
      s.ports.map((p) => `${p.port}/${p.protocol}`).join(',') || '-',
      String(s.endpoints.length),
      policy ? (policy.name ?? 'yes') : '-',
      policy ? routes.join(',') : 'default',
    ]);
  }
  lines.push(alignColumns(rows));
  return lines.join('\n');
}
