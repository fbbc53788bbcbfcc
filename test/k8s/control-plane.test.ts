// `tsmesh control-plane` as a process against a real kube-apiserver, with the
// RBAC of manifests/ and its own ServiceAccount's token: it turns ready, sets
// the injector's caBundle, writes the trust bundle into meshed namespaces,
// streams a Service created through the API to a proxy (and a headless
// Service of meshed pods, which the proxy then reaches by pod address), issues
// certificates with the lifetime ConfigMap tsmesh-config sets over --cert-ttl,
// and streams tsmesh-config's telemetry settings with a namespace's over them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, DiscoveryV1Api, type CoreV1Event } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { createRootCa } from '../../ca/root.js';
import { CA_FILES, loadCaFromDir } from '../../ca/material.js';
import { newKey } from '../../ca/testdata/fixtures.js';
import { buildCsrPem } from '../../ca/csr.js';
import type { StreamConfigSource } from '../../proxy/config/stream.js';
import { buildRoutingTable, lookupTarget } from '../../proxy/config/table.js';
import { createNamespace, createServiceAccount, eventually, requestToken, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { freeControlPlanePorts, proxyStream, startControlPlaneProcess, type ControlPlanePorts, type ControlPlaneProcess } from './control-plane-process.js';
import { applyOrder, readManifests, serverSideApply } from './manifests.js';

describe('tsmesh control-plane in Kubernetes mode (real kube-apiserver, its own RBAC)', function () {
  this.timeout(180_000);
  let server: ApiServer | undefined;
  let dir: string;
  let cp: ControlPlaneProcess | undefined;
  let ports: ControlPlanePorts;

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    ports = await freeControlPlanePorts();
    for (const doc of applyOrder(readManifests())) {
      // This API server runs on the host's network, where the webhook Service's cluster IP would be routed
      // off the machine: the injector is called on loopback instead, at the port the control plane serves it on.
      const object = doc.object as { kind?: string; webhooks?: { clientConfig: Record<string, unknown> }[] };
      if (object.kind === 'MutatingWebhookConfiguration')
        for (const w of object.webhooks ?? []) w.clientConfig = { url: `https://127.0.0.1:${ports.webhook}/inject` };
      await serverSideApply(server.kc, doc.object);
    }
    await createNamespace(server.kc, 'shop', { 'tsmesh.io/inject': 'enabled' });
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-cp-k8s-'));
    const root = await createRootCa('cluster.local');
    writeFileSync(join(dir, CA_FILES.rootCert), root.certPem);
    writeFileSync(join(dir, CA_FILES.rootKey), root.keyPem, { mode: 0o600 });
    cp = await startControlPlaneProcess(server.kc, { dir, caDir: dir, ports, args: ['--cert-ttl', '30m'] });
  });
  after(async () => {
    await cp?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The discovery stream as proxy shop/web gets it, with a certificate from the mesh CA; started. */
  function webProxyStream(): Promise<StreamConfigSource> {
    return proxyStream(dir, ports.ca, 'spiffe://cluster.local/ns/shop/sa/web');
  }

  it('turns ready once discovery has synced', async () => {
    const status = await eventually(async () => {
      const r = await request(`http://127.0.0.1:${ports.admin}/readyz`).catch(() => undefined);
      await r?.body.dump();
      return r?.statusCode === 200 ? 200 : undefined;
    }, 60_000, 'the control plane to be ready').catch((e: Error) => assert.fail(`${e.message}\n${cp!.stderr()}`));
    assert.equal(status, 200);
  });

  it('sets the injector caBundle to the mesh roots', async () => {
    const bundle = (await loadCaFromDir(dir, { trustDomain: 'cluster.local' })).trustBundle.toPem();
    const api = server!.kc.makeApiClient(AdmissionregistrationV1Api);
    await eventually(async () => {
      const w = await api.readMutatingWebhookConfiguration({ name: 'tsmesh-sidecar-injector' });
      const got = w.webhooks?.[0]?.clientConfig.caBundle;
      return got && Buffer.from(got, 'base64').toString() === bundle ? true : undefined;
    }, 20_000, 'the caBundle to be set');
  });

  it('keeps the trust bundle in every meshed namespace', async () => {
    const cm = await eventually(async () => {
      try {
        return await server!.kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: 'shop', name: 'tsmesh-trust-bundle' });
      } catch {
        return undefined;
      }
    }, 20_000, 'the trust-bundle ConfigMap');
    assert.match(cm.data?.['root-cert.pem'] ?? '', /BEGIN CERTIFICATE/);
  });

  it('streams a Service and its endpoints created through the API to a proxy', async () => {
    const stream = await webProxyStream();
    try {
      const core = server!.kc.makeApiClient(CoreV1Api);
      await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'api' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } } });
      await server!.kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
        namespace: 'shop',
        body: {
          metadata: { name: 'api-1', labels: { 'kubernetes.io/service-name': 'api' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true } }],
          ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        },
      });
      const config = await eventually(async () => {
        const c = stream.current();
        const api = c?.services.find((s) => s.name === 'api' && s.namespace === 'shop');
        return api && api.endpoints.length === 1 ? c : undefined;
      }, 20_000, 'the proxy to see the new service');
      const api = config.services.find((s) => s.name === 'api')!;
      assert.equal(api.endpoints[0]!.address, '10.244.1.5');
      assert.equal(api.ports[0]!.targetPort, 8080);
    } finally {
      stream.close();
    }
  });

  it('streams a headless Service and its EndpointSlice of meshed pods to a proxy, which knows each pod by its address', async () => {
    const stream = await webProxyStream();
    try {
      const core = server!.kc.makeApiClient(CoreV1Api);
      // A namespace without the injection label: the pods are written as the injector leaves them, with no
      // call to the injector (whose serving certificate does not name the loopback address it is called on here).
      await createNamespace(server!.kc, 'data');
      await createServiceAccount(server!.kc, 'data', 'db');
      // A StatefulSet's pods, meshed, their init leaving the exporter port 9187 uncaptured.
      const pods = [];
      for (const name of ['db-0', 'db-1']) {
        pods.push(
          await core.createNamespacedPod({
            namespace: 'data',
            body: {
              metadata: { name, labels: { app: 'db' }, annotations: { 'tsmesh.io/status': '{"version":"0.1.0"}' } },
              spec: {
                serviceAccountName: 'db',
                hostname: name,
                subdomain: 'db',
                initContainers: [{ name: 'tsmesh-init', image: 'ghcr.io/tsmesh/tsmesh:0.1.0', args: ['init', '--skip-inbound-ports=9187'] }],
                containers: [{ name: 'postgres', image: 'postgres:17' }],
              },
            },
          }),
        );
      }
      const svc = await core.createNamespacedService({
        namespace: 'data',
        body: { metadata: { name: 'db' }, spec: { clusterIP: 'None', selector: { app: 'db' }, ports: [{ name: 'tcp-pg', port: 5432 }, { name: 'metrics', port: 9187 }] } },
      });
      assert.equal(svc.spec?.clusterIP, 'None');
      await server!.kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
        namespace: 'data',
        body: {
          metadata: { name: 'db-1', labels: { 'kubernetes.io/service-name': 'db', 'service.kubernetes.io/headless': '' } },
          addressType: 'IPv4',
          endpoints: pods.map((p, i) => ({
            addresses: [`10.244.3.${10 + i}`],
            hostname: p.metadata!.name!,
            conditions: { ready: true },
            targetRef: { kind: 'Pod', name: p.metadata!.name!, namespace: 'data', uid: p.metadata!.uid! },
          })),
          ports: [
            { name: 'tcp-pg', port: 5432, protocol: 'TCP' },
            { name: 'metrics', port: 9187, protocol: 'TCP' },
          ],
        },
      });
      const config = await eventually(async () => {
        const c = stream.current();
        const db = c?.services.find((s) => s.name === 'db' && s.namespace === 'data');
        return db && db.endpoints.length === 2 ? c : undefined;
      }, 20_000, 'the proxy to see the headless service');
      const db = config.services.find((s) => s.name === 'db')!;
      assert.deepEqual(db.clusterIPs, []);
      assert.deepEqual(db.endpoints, [
        { address: '10.244.3.10', identity: 'spiffe://cluster.local/ns/data/sa/db', skipInboundPorts: ['9187'] },
        { address: '10.244.3.11', identity: 'spiffe://cluster.local/ns/data/sa/db', skipInboundPorts: ['9187'] },
      ]);
      // What the proxy makes of it: db-1.db.data.svc's address on 5432 is that pod, over mTLS with its identity; 9187 passes through.
      const table = buildRoutingTable(config);
      const pinned = lookupTarget(table, '10.244.3.11', 5432);
      assert.equal(pinned?.key, 'db.data');
      assert.deepEqual(pinned?.endpoints.map((e) => [e.address, e.port, e.identity]), [['10.244.3.11', 5432, 'spiffe://cluster.local/ns/data/sa/db']]);
      assert.equal(pinned?.port.protocol, 'tcp');
      assert.equal(lookupTarget(table, '10.244.3.11', 9187), undefined);
    } finally {
      stream.close();
    }
  });

  describe('certificate lifetime: ConfigMap tsmesh-config certificateTtl over --cert-ttl 30m', function () {
    let agent: Agent | undefined;
    before(async () => {
      await createServiceAccount(server!.kc, 'shop', 'web');
      agent = new Agent({ connect: { ca: (await loadCaFromDir(dir, { trustDomain: 'cluster.local' })).trustBundle.toPem(), servername: 'localhost' } });
    });
    after(async () => agent?.close());

    /** Lifetime in seconds of a certificate issued to shop/web now (NotAfter - NotBefore - the backdating). */
    const issuedLifetime = async (): Promise<number> => {
      const { token } = await requestToken(server!.kc, 'shop', 'web', 'tsmesh-ca', 600);
      const res = await request(`https://127.0.0.1:${ports.ca}/v1/certificates`, {
        method: 'POST',
        dispatcher: agent!,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ csr: buildCsrPem(newKey()) }),
      });
      const json = (await res.body.json()) as { notBefore: string; expiresAt: string };
      assert.equal(res.statusCode, 200, JSON.stringify(json));
      return Math.round((Date.parse(json.expiresAt) - Date.parse(json.notBefore)) / 1000) - 60;
    };
    const ttlMetric = async (): Promise<number | undefined> => {
      const r = await request(`http://127.0.0.1:${ports.admin}/metrics`);
      const m = /^tsmesh_ca_certificate_ttl_seconds (\d+)$/m.exec(await r.body.text());
      return m ? Number(m[1]) : undefined;
    };
    /** Sets (or with undefined removes) certificateTtl; returns the ConfigMap's new resourceVersion. */
    const setTtl = async (value: string | undefined): Promise<string | undefined> => {
      const core = server!.kc.makeApiClient(CoreV1Api);
      const cm = await core.readNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
      const data = { ...cm.data };
      if (value === undefined) delete data['certificateTtl'];
      else data['certificateTtl'] = value;
      return (await core.replaceNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config', body: { ...cm, data } })).metadata?.resourceVersion;
    };
    /** The Warning Events on ConfigMap tsmesh-config. */
    const configWarnings = async (): Promise<CoreV1Event[]> =>
      (
        await server!.kc
          .makeApiClient(CoreV1Api)
          .listNamespacedEvent({ namespace: 'tsmesh-system', fieldSelector: 'involvedObject.kind=ConfigMap,involvedObject.name=tsmesh-config,type=Warning' })
      ).items;
    const waitTtl = (seconds: number, what: string): Promise<number> =>
      eventually(async () => ((await ttlMetric()) === seconds ? seconds : undefined), 10_000, what).catch((e: Error) => assert.fail(`${e.message}\n${cp!.stderr()}`));

    it('issues for --cert-ttl while the ConfigMap sets no certificateTtl', async () => {
      await waitTtl(1800, 'the --cert-ttl lifetime');
      assert.ok(Math.abs((await issuedLifetime()) - 1800) <= 1);
    });

    it('a certificateTtl set in the ConfigMap applies to the next certificates', async () => {
      await setTtl('2h');
      await waitTtl(7200, 'the ConfigMap lifetime');
      assert.ok(Math.abs((await issuedLifetime()) - 7200) <= 1);
      assert.match(cp!.stderr(), /"msg":"certificate lifetime for certificates issued from now on","ttl":"2h","from":"ConfigMap tsmesh-config certificateTtl"/);
    });

    it('a bad certificateTtl is refused, naming the key and the value, in the log and in an Event on the ConfigMap, and 2h stays in force', async () => {
      const before = cp!.stderr().length;
      assert.deepEqual(await configWarnings(), [], 'no Warning Event before the refusal');
      const refusedVersion = await setTtl('10s');
      const line = await eventually(async () => cp!.stderr().slice(before).split('\n').find((l) => l.includes('ConfigMap tsmesh-config is invalid')), 10_000, 'the refusal');
      const logged = JSON.parse(line) as { level: string; error: string; keeping: { certificateTtlSeconds?: number } };
      assert.equal(logged.level, 'error');
      assert.equal(logged.error, 'data.certificateTtl: 10s is outside 60s to 30d');
      assert.equal(logged.keeping.certificateTtlSeconds, 7200);
      // What `kubectl describe configmap tsmesh-config -n tsmesh-system` shows.
      const [event, ...more] = await eventually(async () => ((await configWarnings()).length > 0 ? configWarnings() : undefined), 10_000, 'the Warning Event');
      assert.equal(more.length, 0, 'one Event for the refused version');
      assert.equal(event!.reason, 'InvalidConfig');
      assert.equal(event!.message, 'data.certificateTtl: 10s is outside 60s to 30d; the last good mesh settings stay in force');
      assert.equal(event!.involvedObject.resourceVersion, refusedVersion);
      assert.equal(event!.source?.component, 'tsmesh-control-plane');
      assert.equal(await ttlMetric(), 7200);
      assert.ok(Math.abs((await issuedLifetime()) - 7200) <= 1);
      assert.equal((await configWarnings()).length, 1, 'still one Event: the refused version is judged once');
    });

    it('without the key, --cert-ttl is in force again', async () => {
      await setTtl(undefined);
      await waitTtl(1800, 'back to --cert-ttl');
      assert.ok(Math.abs((await issuedLifetime()) - 1800) <= 1);
    });
  });

  // After the certificate lifetime's tests, which count the Warning Events on tsmesh-config: this one adds one.
  describe('telemetry settings', function () {
    it("streams tsmesh-config's tracing and accessLog, and a namespace's tsmesh.io/access-log over them, to a proxy; a refused value keeps the last good ones", async () => {
      const stream = await webProxyStream();
      const core = server!.kc.makeApiClient(CoreV1Api);
      const setData = async (over: Record<string, string | undefined>): Promise<void> => {
        const cm = await core.readNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
        const merged = Object.entries({ ...cm.data, ...over }).filter((e): e is [string, string] => e[1] !== undefined);
        const data = Object.fromEntries(merged);
        await core.replaceNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config', body: { ...cm, data } });
      };
      const annotate = async (value: string | undefined): Promise<void> => {
        const ns = await core.readNamespace({ name: 'shop' });
        const annotations: Record<string, string> = { ...ns.metadata?.annotations };
        if (value === undefined) delete annotations['tsmesh.io/access-log'];
        else annotations['tsmesh.io/access-log'] = value;
        await core.replaceNamespace({ name: 'shop', body: { ...ns, metadata: { ...ns.metadata, annotations } } });
      };
      try {
        await setData({ tracing: 'export: true\ncollector: http://otel-collector.observability:4318\nsampling: 0.05\n', accessLog: 'errors' });
        await annotate('sampled,sampling=0.5');
        const config = await eventually(async () => {
          const c = stream.current();
          return c?.mesh.tracing?.export && c.telemetry?.accessLog ? c : undefined;
        }, 20_000, 'the proxy to get the telemetry settings').catch((e: Error) => assert.fail(`${e.message}\n${cp!.stderr()}`));
        assert.deepEqual(config.mesh.tracing, { export: true, collector: 'http://otel-collector.observability:4318/v1/traces', sampling: 0.05 });
        assert.deepEqual(config.mesh.accessLog, { mode: 'errors', sampling: 0.01, query: false });
        assert.deepEqual(config.telemetry, { accessLog: { mode: 'sampled', sampling: 0.5 } });

        // Export on without a collector: refused, naming the key; the proxy keeps what it had.
        const before = cp!.stderr().length;
        await setData({ tracing: 'on' });
        const line = await eventually(async () => cp!.stderr().slice(before).split('\n').find((l) => l.includes('ConfigMap tsmesh-config is invalid')), 10_000, 'the refusal');
        assert.match((JSON.parse(line) as { error: string }).error, /^data\.tracing\.collector: is needed when export is on/);
        assert.deepEqual(stream.current()?.mesh.tracing, config.mesh.tracing);
      } finally {
        await setData({ tracing: undefined, accessLog: undefined });
        await annotate(undefined);
        stream.close();
      }
    });
  });
});
