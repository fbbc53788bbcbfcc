// Gateway API routes end to end on a real kube-apiserver: `tsmesh control-plane`
// as a process, with the RBAC of manifests/ and its own ServiceAccount's
// token, starts without the Gateway API CRDs (ready, saying once that the
// kinds are not served), picks HTTPRoutes and GRPCRoutes up once
// manifests/gateway-api-crds.yaml is applied, streams them to a proxy as its
// Services' gatewayRoutes, and, as the leader, writes each route's
// status.parents (Accepted and ResolvedRefs, True and False with their
// reasons); a route it cannot apply keeps the last good config in the stream.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { request } from 'undici';
import { createRootCa } from '../../ca/root.js';
import { CA_FILES } from '../../ca/material.js';
import type { GatewayPortRoutes } from '../../contract/proxy-config.js';
import type { StreamConfigSource } from '../../proxy/config/stream.js';
import type { RouteCondition, RouteObject } from '../../control/sources/kubernetes-routes.js';
import { createNamespace, eventually, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { freeControlPlanePorts, proxyStream, startControlPlaneProcess, type ControlPlanePorts, type ControlPlaneProcess } from './control-plane-process.js';
import { applyOrder, readManifests, resolveResource, serverSideApply } from './manifests.js';
const NS = 'mesh';
const GROUP = 'gateway.networking.k8s.io';
const GATEWAY_CRDS = 'gateway-api-crds.yaml';

describe('Gateway API routes through tsmesh control-plane (real kube-apiserver, its own RBAC)', function () {
  this.timeout(180_000);
  let server: ApiServer | undefined;
  let dir: string;
  let cp: ControlPlaneProcess | undefined;
  let ports: ControlPlanePorts;
  let stream: StreamConfigSource | undefined;
  let custom: CustomObjectsApi;

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    custom = server.kc.makeApiClient(CustomObjectsApi);
    ports = await freeControlPlanePorts();
    // Everything but the Gateway API CRDs: the control plane starts without them.
    for (const doc of applyOrder(readManifests().filter((d) => d.file !== GATEWAY_CRDS))) {
      const object = doc.object as { kind?: string; webhooks?: { clientConfig: Record<string, unknown> }[] };
      if (object.kind === 'MutatingWebhookConfiguration') for (const w of object.webhooks ?? []) w.clientConfig = { url: `https://127.0.0.1:${ports.webhook}/inject` };
      await serverSideApply(server.kc, doc.object);
    }
    await createNamespace(server.kc, NS);
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-gateway-routes-'));
    const root = await createRootCa('cluster.local');
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    cp = await startControlPlaneProcess(server.kc, { dir, caDir: dir, ports });
  });
  after(async () => {
    stream?.close();
    await cp?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The gatewayRoutes of Service `name` in the config proxy mesh/client runs, once `ok` holds. */
  const routesOf = (name: string, ok: (r: GatewayPortRoutes[] | undefined) => boolean, what: string): Promise<GatewayPortRoutes[] | undefined> =>
    eventually(async () => {
      const svc = stream!.current()?.services.find((s) => s.name === name && s.namespace === NS);
      return svc && ok(svc.gatewayRoutes) ? { routes: svc.gatewayRoutes } : undefined;
    }, 20_000, what).then((r) => r.routes);

  const plural = (kind: 'HTTPRoute' | 'GRPCRoute'): string => (kind === 'HTTPRoute' ? 'httproutes' : 'grpcroutes');
  const createRoute = (kind: 'HTTPRoute' | 'GRPCRoute', name: string, spec: unknown): Promise<unknown> =>
    custom.createNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: NS, plural: plural(kind), body: { apiVersion: `${GROUP}/v1`, kind, metadata: { name }, spec } });
  const readRoute = (kind: 'HTTPRoute' | 'GRPCRoute', name: string): Promise<RouteObject & { metadata: { generation: number } }> =>
    custom.getNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: NS, plural: plural(kind), name }) as Promise<RouteObject & { metadata: { generation: number } }>;

  /** The mesh controller's conditions of `name`'s first parent, once its observedGeneration is the route's. */
  async function meshConditions(kind: 'HTTPRoute' | 'GRPCRoute', name: string): Promise<Record<string, RouteCondition>> {
    return eventually(async () => {
      const r = await readRoute(kind, name);
      const entry = r.status?.parents?.find((p) => p.controllerName === 'tsmesh.io/mesh-controller');
      const conditions = entry?.conditions ?? [];
      if (conditions.length === 0 || conditions.some((c) => c.observedGeneration !== r.metadata.generation)) return undefined;
      return Object.fromEntries(conditions.map((c) => [c.type, c]));
    }, 20_000, `the status of ${kind} ${name}`);
  }

  it('is ready without the Gateway API CRDs, and says once that the route kinds are not served', async () => {
    await eventually(async () => {
      const r = await request(`http://127.0.0.1:${ports.admin}/readyz`).catch(() => undefined);
      await r?.body.dump();
      return r?.statusCode === 200 ? true : undefined;
    }, 60_000, 'the control plane to be ready').catch((e: Error) => assert.fail(`${e.message}\n${cp!.stderr()}`));
    const stderr = cp!.stderr();
    const notServed = stderr.split('\n').filter((l) => l.includes('resource not served') && l.includes('"resource":"httproutes"'));
    assert.equal(notServed.length, 1, stderr);

    stream = await proxyStream(dir, ports.ca, `spiffe://cluster.local/ns/${NS}/sa/client`);
    const core = server!.kc.makeApiClient(CoreV1Api);
    for (const [name, port] of [['echo', 80], ['echo-v1', 8080], ['echo-v2', 8080]] as const)
      await core.createNamespacedService({ namespace: NS, body: { metadata: { name }, spec: { ports: [{ name: 'http', port, targetPort: 8080 }] } } });
    assert.equal(await routesOf('echo', (r) => r === undefined, 'Service echo in the stream, without routes'), undefined);
  });

  it('picks HTTPRoutes up once the CRDs are installed, streams them in precedence order, and writes Accepted and ResolvedRefs True', async () => {
    for (const d of readManifests().filter((x) => x.file === GATEWAY_CRDS)) {
      await serverSideApply(server!.kc, d.object);
      const spec = d.object['spec'] as { names: { kind: string } };
      await eventually(() => resolveResource(server!.kc, `${GROUP}/v1`, spec.names.kind), 20_000, `${spec.names.kind} to be served`);
    }
    await createRoute('HTTPRoute', 'echo', {
      parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
      rules: [
        { backendRefs: [{ name: 'echo-v1', port: 8080 }] },
        { name: 'v2', matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], backendRefs: [{ name: 'echo-v2', port: 8080 }] },
      ],
    });
    // The informer retries the watch with backoff (30 s apart at most) and lists the kind once it is served.
    const routes = await routesOf('echo', (r) => r !== undefined, 'the HTTPRoute in the stream');
    assert.deepEqual(routes, [
      {
        port: 80,
        routes: [
          { name: 'httproute/mesh/echo/v2', backends: [{ service: 'echo-v2.mesh', weight: 1, port: 8080 }], match: { pathPrefix: '/v2' } },
          // The API server fills in a rule's default match, PathPrefix "/".
          { name: 'httproute/mesh/echo/rule-0', backends: [{ service: 'echo-v1.mesh', weight: 1, port: 8080 }], match: { pathPrefix: '/' } },
        ],
      },
    ]);
    const c = await meshConditions('HTTPRoute', 'echo');
    assert.deepEqual([c['Accepted']?.status, c['Accepted']?.reason, c['ResolvedRefs']?.status, c['ResolvedRefs']?.reason], ['True', 'Accepted', 'True', 'ResolvedRefs']);
  });

  it('says why in the status: a parentRef to a Service that does not exist, a backend that does not exist', async () => {
    await createRoute('HTTPRoute', 'orphan', { parentRefs: [{ group: '', kind: 'Service', name: 'nowhere' }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 8080 }] }] });
    await createRoute('HTTPRoute', 'missing-backend', {
      parentRefs: [{ group: '', kind: 'Service', name: 'echo-v2', port: 8080 }],
      rules: [{ backendRefs: [{ name: 'gone', port: 80 }] }],
    });
    const orphan = await meshConditions('HTTPRoute', 'orphan');
    assert.deepEqual([orphan['Accepted']?.status, orphan['Accepted']?.reason, orphan['Accepted']?.message], ['False', 'NoMatchingParent', 'Service mesh/nowhere does not exist']);
    const missing = await meshConditions('HTTPRoute', 'missing-backend');
    assert.deepEqual([missing['Accepted']?.status, missing['ResolvedRefs']?.status, missing['ResolvedRefs']?.reason], ['True', 'False', 'BackendNotFound']);
    // Its share of requests (all of them here) goes to a name no proxy resolves: 500.
    const routes = await routesOf('echo-v2', (r) => r !== undefined, 'echo-v2\'s route');
    assert.deepEqual(routes?.[0]?.routes[0]?.backends, [{ service: 'not-found:gone.mesh', weight: 1, port: 80 }]);
  });

  it('streams a GRPCRoute as path matches and writes its status', async () => {
    await core().createNamespacedService({ namespace: NS, body: { metadata: { name: 'greeter' }, spec: { ports: [{ name: 'grpc', port: 50051, targetPort: 50051 }] } } });
    await createRoute('GRPCRoute', 'greeter', {
      parentRefs: [{ group: '', kind: 'Service', name: 'greeter' }],
      rules: [{ matches: [{ method: { service: 'helloworld.Greeter', method: 'SayHello' } }], backendRefs: [{ name: 'echo-v1', port: 8080 }] }],
    });
    const routes = await routesOf('greeter', (r) => r !== undefined, 'the GRPCRoute in the stream');
    assert.deepEqual(routes?.[0]?.routes[0]?.match, { pathExact: '/helloworld.Greeter/SayHello' });
    const c = await meshConditions('GRPCRoute', 'greeter');
    assert.equal(c['Accepted']?.status, 'True');
  });

  it('keeps another controller\'s entry in status.parents when it rewrites its own', async () => {
    await createRoute('HTTPRoute', 'shared', {
      parentRefs: [{ name: 'public' }, { group: '', kind: 'Service', name: 'echo-v1', port: 8080 }],
      rules: [{ backendRefs: [{ name: 'echo-v1', port: 8080 }] }],
    });
    await meshConditions('HTTPRoute', 'shared');
    const gatewayEntry = {
      parentRef: { group: GROUP, kind: 'Gateway', name: 'public' },
      controllerName: 'example.com/gateway-controller',
      conditions: [{ type: 'Accepted', status: 'True', observedGeneration: 1, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'Accepted', message: 'by the gateway' }],
    };
    const r = await readRoute('HTTPRoute', 'shared');
    await custom.replaceNamespacedCustomObjectStatus({ group: GROUP, version: 'v1', namespace: NS, plural: 'httproutes', name: 'shared', body: { ...r, status: { parents: [gatewayEntry, ...(r.status?.parents ?? [])] } } });
    // A new generation: the mesh controller writes its conditions again.
    const next = await readRoute('HTTPRoute', 'shared');
    (next.spec as { rules: { backendRefs: unknown[] }[] }).rules[0]!.backendRefs = [{ name: 'echo-v2', port: 8080 }];
    await custom.replaceNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: NS, plural: 'httproutes', name: 'shared', body: next });
    const c = await meshConditions('HTTPRoute', 'shared');
    assert.equal(c['Accepted']?.observedGeneration, 2);
    const parents = (await readRoute('HTTPRoute', 'shared')).status?.parents ?? [];
    assert.deepEqual(parents.find((p) => p.controllerName === 'example.com/gateway-controller'), gatewayEntry);
    assert.equal(parents.length, 2);
  });

  it('a route it cannot apply is Accepted False with the reason, and the last good config stays in the stream', async () => {
    const before = await routesOf('echo', (r) => r !== undefined, 'echo\'s routes');
    const current = await readRoute('HTTPRoute', 'echo');
    const spec = current.spec as { rules: { matches?: unknown[] }[] };
    spec.rules[1]!.matches = [{ path: { type: 'RegularExpression', value: '/v2/(' } }];
    await custom.replaceNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: NS, plural: 'httproutes', name: 'echo', body: current });
    const c = await meshConditions('HTTPRoute', 'echo');
    assert.deepEqual([c['Accepted']?.status, c['Accepted']?.reason], ['False', 'UnsupportedValue']);
    assert.match(c['Accepted']!.message, /^spec\.rules\[1\]\.matches\[0\]\.match\.pathRegex: "\/v2\/\(" is not a regular expression/);
    // The status is written after the model is built: the config in force by now is what the bad route left.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(stream!.current()?.services.find((s) => s.name === 'echo')?.gatewayRoutes, before);
  });

  const core = (): CoreV1Api => server!.kc.makeApiClient(CoreV1Api);
});
