// The two containers and the volumes injection adds. DESIGN.md ("Injected
// pod") is the contract; the proxy's environment comes from proxy/env.ts and
// the init container's flags are those of init/config.ts, so neither side can
// drift from what the webhook writes.
import type { V1Container, V1EnvVar, V1Probe, V1Volume } from '@kubernetes/client-node';
import type { InitFlag } from '../init/config.js';
import { PROXY_DEFAULTS, PROXY_ENV, PROXY_MOUNTS, PROXY_NODE_OPTIONS, type AppProbes } from '../contract/env.js';
import type { MeshConfig } from './mesh-config.js';
import { cidrListText, portListText, type Overrides } from './overrides.js';
import { ADMIN_PORT_NAME, INIT_CONTAINER, PROXY_CONTAINER, PROXY_UID, CA_TOKEN_AUDIENCE, TRUST_BUNDLE_CONFIGMAP, VOLUMES } from '../contract/names.js';

/** kubelet refreshes a projected token at 80% of its life; the CA sees it at each certificate renewal. */
export const TOKEN_EXPIRATION_SECONDS = 3600;

/**
 * How long the proxy's postStart hook waits for it to be ready. While a
 * postStart hook runs, kubelet neither probes the container nor starts the
 * next one, so the startup probe's first try comes once the proxy holds a
 * certificate and its config, and a meshed pod starts without `Unhealthy`
 * events (probing from the container's start failed two or three times:
 * connection refused while node loads, then 503 until the certificate).
 */
export const READY_WAIT_SECONDS = 60;
/** After the hook, the startup probe: 60 x 1 s more before kubelet restarts the proxy, 120 s in all. */
const STARTUP_FAILURE_THRESHOLD = 60;

/**
 * The hook's program (`node -e`): GET /ready on the admin port every 100 ms
 * until it answers 200 or the wait is over. It exits 0 either way: a failing
 * postStart hook would kill the proxy, and a proxy that is not ready by then
 * is the startup probe's to judge. node:http rather than fetch, so the
 * short-lived process stays small (it counts against the proxy's memory limit).
 */
export function readyWaitScript(port: number = PROXY_DEFAULTS.ADMIN_PORT, seconds: number = READY_WAIT_SECONDS): string {
  return [
    `const http = require('node:http'), end = Date.now() + ${seconds * 1000};`,
    `function again() { if (Date.now() < end) setTimeout(poll, 100); else process.exit(0); }`,
    `function poll() {`,
    `  const req = http.get({ host: '127.0.0.1', port: ${port}, path: '/ready', timeout: 1000 }, (res) => { res.resume(); if (res.statusCode === 200) process.exit(0); else again(); });`,
    `  req.on('timeout', () => req.destroy()).on('error', again);`,
    `}`,
    `poll();`,
  ].join('\n');
}

const INIT_RESOURCES = { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } };

/** The `tsmesh init` flags for this pod, in INIT_FLAGS' names; empty lists are left out. */
export function initFlags(overrides: Overrides): [InitFlag, string][] {
  const flags: [InitFlag, string][] = [
    ['proxy-uid', String(PROXY_UID)],
    ['proxy-gid', String(PROXY_UID)],
    ['inbound-port', String(PROXY_DEFAULTS.INBOUND_PORT)],
    ['outbound-port', String(PROXY_DEFAULTS.OUTBOUND_PORT)],
  ];
  const lists: [InitFlag, string][] = [
    ['skip-inbound-ports', portListText(overrides.skipInboundPorts)],
    ['skip-outbound-ports', portListText(overrides.skipOutboundPorts)],
    ['skip-outbound-cidrs', cidrListText(overrides.skipOutboundCidrs)],
  ];
  return [...flags, ...lists.filter(([, v]) => v !== '')];
}

export function initContainer(mesh: MeshConfig, overrides: Overrides): V1Container {
  return {
    name: INIT_CONTAINER,
    image: mesh.image,
    imagePullPolicy: mesh.imagePullPolicy,
    args: ['init', ...initFlags(overrides).map(([flag, value]) => `--${flag}=${value}`)],
    resources: INIT_RESOURCES,
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    volumeMounts: [{ name: VOLUMES.xtablesLock, mountPath: '/run' }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
const valueEnv = (name: string, value: string | number): V1EnvVar => ({ name, value: String(value) });
const adminProbe = (path: string, periodSeconds: number, failureThreshold: number): V1Probe => ({
  httpGet: { path, port: PROXY_DEFAULTS.ADMIN_PORT, scheme: 'HTTP' },
  periodSeconds,
  timeoutSeconds: 1,
  failureThreshold,
});

export function proxyContainer(mesh: MeshConfig, overrides: Overrides, appProbes: AppProbes): V1Container {
  const { resources } = overrides;
  const env: V1EnvVar[] = [
    fieldEnv(PROXY_ENV.POD_NAME, 'metadata.name'),
    fieldEnv(PROXY_ENV.POD_NAMESPACE, 'metadata.namespace'),
    fieldEnv(PROXY_ENV.POD_IP, 'status.podIP'),
    fieldEnv(PROXY_ENV.SERVICE_ACCOUNT, 'spec.serviceAccountName'),
    valueEnv(PROXY_ENV.TRUST_DOMAIN, mesh.trustDomain),
    valueEnv(PROXY_ENV.CONTROL_PLANE_ADDRESS, mesh.controlPlaneAddress),
    valueEnv(PROXY_ENV.TOKEN_PATH, `${PROXY_MOUNTS.TOKEN_DIR}/${PROXY_MOUNTS.TOKEN_FILE}`),
    valueEnv(PROXY_ENV.TRUST_BUNDLE_PATH, `${PROXY_MOUNTS.TRUST_BUNDLE_DIR}/${PROXY_MOUNTS.TRUST_BUNDLE_KEY}`),
    valueEnv(PROXY_ENV.INBOUND_PORT, PROXY_DEFAULTS.INBOUND_PORT),
    valueEnv(PROXY_ENV.OUTBOUND_PORT, PROXY_DEFAULTS.OUTBOUND_PORT),
    valueEnv(PROXY_ENV.ADMIN_PORT, PROXY_DEFAULTS.ADMIN_PORT),
    valueEnv(PROXY_ENV.LOG_LEVEL, overrides.logLevel),
    valueEnv('NODE_OPTIONS', PROXY_NODE_OPTIONS),
  ];
  if (overrides.opaquePorts.length > 0) env.push(valueEnv(PROXY_ENV.OPAQUE_PORTS, portListText(overrides.opaquePorts)));
  if (Object.keys(appProbes).length > 0) env.push(valueEnv(PROXY_ENV.APP_PROBES, JSON.stringify(appProbes)));
  return {
    name: PROXY_CONTAINER,
    image: mesh.image,
    imagePullPolicy: mesh.imagePullPolicy,
    args: ['proxy'],
    // A native sidecar: started before the next init container, stopped after the app containers.
    restartPolicy: 'Always',
    ports: [{ name: ADMIN_PORT_NAME, containerPort: PROXY_DEFAULTS.ADMIN_PORT, protocol: 'TCP' }],
    env,
    resources: {
      requests: { cpu: resources.cpuRequest, memory: resources.memoryRequest },
      limits: { memory: resources.memoryLimit, ...(resources.cpuLimit === undefined ? {} : { cpu: resources.cpuLimit }) },
    },
    securityContext: {
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // App containers and later init containers start only once the proxy holds
    // a certificate and its config: the hook waits for it, the probe confirms.
    lifecycle: { postStart: { exec: { command: ['node', '-e', readyWaitScript()] } } },
    startupProbe: adminProbe('/ready', 1, STARTUP_FAILURE_THRESHOLD),
    readinessProbe: adminProbe('/ready', 5, 3),
    livenessProbe: adminProbe('/live', 10, 3),
    volumeMounts: [
      { name: VOLUMES.token, mountPath: PROXY_MOUNTS.TOKEN_DIR, readOnly: true },
      { name: VOLUMES.trustBundle, mountPath: PROXY_MOUNTS.TRUST_BUNDLE_DIR, readOnly: true },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

export function meshVolumes(): V1Volume[] {
  return [
    {
      name: VOLUMES.token,
      projected: {
        sources: [{ serviceAccountToken: { audience: CA_TOKEN_AUDIENCE, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: PROXY_MOUNTS.TOKEN_FILE } }],
      },
    },
    { name: VOLUMES.trustBundle, configMap: { name: TRUST_BUNDLE_CONFIGMAP } },
    { name: VOLUMES.xtablesLock, emptyDir: {} },
  ];
}
