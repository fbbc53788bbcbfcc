// Every document in manifests/ is read as kubectl reads it and passes
// `kubectl apply --server-side --dry-run=server --validate=strict` against a
// real kube-apiserver (see manifests.ts for how the apply is made). The
// control plane's Deployment and Service agree with DESIGN.md and with the
// flags `tsmesh control-plane` accepts.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPlaneCommand } from '../../cli/commands/control-plane.js';
import { MESH_NAMESPACE, CONTROL_PLANE_NAME } from '../../contract/names.js';
import { eventually, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import {
  ApiRequestError,
  applyOrder,
  describeDoc,
  manifestsDir,
  parseDocuments,
  readManifests,
  resolveResource,
  serverSideApply,
  splitApiVersion,
  type ManifestDoc,
  type ManifestObject,
} from './manifests.js';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(resolve(here, '..', '..', 'package.json'), 'utf8')) as { version: string };

// Read at load time: one test per document.
const docs = readManifests();
const ordered = applyOrder(docs);

/** The kinds the manifests' own CustomResourceDefinitions define, as `group/Kind`. */
function crdKinds(all: readonly ManifestDoc[]): Set<string> {
  const out = new Set<string>();
  for (const d of all) {
    if (d.object.kind !== 'CustomResourceDefinition') continue;
    const spec = d.object['spec'] as { group?: string; names?: { kind?: string } } | undefined;
    if (spec?.group && spec.names?.kind) out.add(`${spec.group}/${spec.names.kind}`);
  }
  return out;
}

function find(kind: string, name: string): ManifestObject {
  const d = docs.find((x) => x.object.kind === kind && x.object.metadata.name === name);
  assert.ok(d, `manifests/ has no ${kind} ${name}`);
  return d.object;
}

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  startupProbe?: { httpGet?: { path?: string; port?: string | number } };
  livenessProbe?: { httpGet?: { path?: string; port?: string | number } };
  readinessProbe?: { httpGet?: { path?: string; port?: string | number } };
  securityContext?: { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  serviceAccountName?: string;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
  containers: Container[];
  volumes?: { name: string; secret?: { secretName?: string; defaultMode?: number } }[];
}

/** DESIGN.md's control-plane ports, by the names the manifests give them. */
const PORTS = { 'https-ca': 15012, 'http-admin': 15014, 'https-webhook': 9443 } as const;

describe('manifests/', function () {
  describe('as files', function () {
    it('holds namespace.yaml and control-plane.yaml', function () {
      const files = new Set(docs.map((d) => d.file));
      for (const f of ['namespace.yaml', 'control-plane.yaml']) assert.ok(files.has(f), `manifests/${f} is missing`);
    });

    it('names every object once, and every namespaced tsmesh object lives in tsmesh-system', function () {
      const seen = new Map<string, string>();
      for (const d of docs) {
        const m = d.object.metadata;
        const key = `${splitApiVersion(d.object.apiVersion).group}/${d.object.kind}/${m.namespace ?? ''}/${m.name}`;
        assert.ok(!seen.has(key), `${describeDoc(d)} is also defined at ${seen.get(key)}`);
        seen.set(key, describeDoc(d));
        if (m.namespace !== undefined) assert.equal(m.namespace, MESH_NAMESPACE, `${describeDoc(d)}: tsmesh's own objects belong in ${MESH_NAMESPACE}`);
      }
    });

    it('reads the same under YAML 1.1 (kubectl) and YAML 1.2 (no leading-zero numbers, yes/no, on/off)', function () {
      for (const file of new Set(docs.map((d) => d.file))) {
        const text = readFileSync(join(manifestsDir, file), 'utf8');
        assert.deepEqual(parseDocuments(text, file, '1.2'), parseDocuments(text, file, '1.1'), `manifests/${file} means different things to YAML 1.1 and 1.2 parsers; quote the value or write it in decimal`);
      }
    });

    it('applies Namespaces first, then CustomResourceDefinitions, then the rest in file order', function () {
      assert.equal(ordered[0]?.object.kind, 'Namespace');
      const kinds = ordered.map((d) => d.object.kind);
      const lastNs = kinds.lastIndexOf('Namespace');
      const firstOther = kinds.findIndex((k) => k !== 'Namespace' && k !== 'CustomResourceDefinition');
      const lastCrd = kinds.lastIndexOf('CustomResourceDefinition');
      assert.ok(firstOther < 0 || (lastNs < firstOther && lastCrd < firstOther), `order: ${ordered.map(describeDoc).join(', ')}`);
    });
  });

  describe('the control plane Deployment and Service', function () {
    const deployment = find('Deployment', CONTROL_PLANE_NAME);
    const pod = (deployment['spec'] as { template: { spec: PodSpec } }).template.spec;
    const container = pod.containers[0]!;

    it(`runs ghcr.io/tsmesh/tsmesh:<package version> as ServiceAccount ${CONTROL_PLANE_NAME}`, function () {
      assert.equal(pod.containers.length, 1);
      assert.equal(container.image, `ghcr.io/tsmesh/tsmesh:${pkg.version}`, 'the image tag follows package.json\'s version');
      assert.equal(pod.serviceAccountName, CONTROL_PLANE_NAME);
      find('ServiceAccount', CONTROL_PLANE_NAME);
    });

    it('passes only flags that `tsmesh control-plane` knows', function () {
      assert.deepEqual(container.command, ['tsmesh']);
      const [sub, ...flags] = container.args ?? [];
      assert.equal(sub, 'control-plane');
      for (const f of flags) {
        const name = /^(--[a-z-]+)(=|$)/.exec(f)?.[1];
        assert.ok(name, `argument ${JSON.stringify(f)} is not a --flag or --flag=value`);
        assert.ok(controlPlaneCommand.usage.includes(`${name} `), `${name} is not a flag of tsmesh control-plane:\n${controlPlaneCommand.usage}`);
      }
    });

    it('mounts Secret tsmesh-ca where --ca-dir points, read-only', function () {
      const caDir = container.args?.find((a) => a.startsWith('--ca-dir='))?.slice('--ca-dir='.length);
      assert.equal(caDir, '/etc/tsmesh/ca');
      const mount = container.volumeMounts?.find((m) => m.mountPath === caDir);
      assert.ok(mount?.readOnly, 'the CA folder is mounted read-only');
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      assert.equal(volume?.secret?.secretName, 'tsmesh-ca');
      assert.equal(volume.secret.defaultMode, 0o440);
    });

    it('exposes 15012, 15014 and 9443 by name, in the Deployment and the Service', function () {
      const ports = Object.fromEntries((container.ports ?? []).map((p) => [p.name, p.containerPort]));
      assert.deepEqual(ports, PORTS);
      const service = find('Service', CONTROL_PLANE_NAME);
      const spec = service['spec'] as { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] };
      assert.deepEqual(Object.fromEntries(spec.ports.map((p) => [p.name, p.port])), PORTS);
      for (const p of spec.ports) assert.equal(p.targetPort, p.name, `Service port ${p.name} targets the container port by name`);
      const labels = (deployment['spec'] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
      for (const [k, v] of Object.entries(spec.selector)) assert.equal(labels[k], v, `the Service selects the pods by ${k}=${v}`);
    });

    it('serves every webhook configuration in manifests/, whose caBundle the control plane may patch', function () {
      const service = find('Service', CONTROL_PLANE_NAME);
      const servicePorts = (service['spec'] as { ports: { port: number }[] }).ports.map((p) => p.port);
      const role = find('ClusterRole', CONTROL_PLANE_NAME);
      const patchable = ((role['rules'] as { apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[] }[] | undefined) ?? [])
        .filter((r) => r.apiGroups?.includes('admissionregistration.k8s.io') && r.resources?.includes('mutatingwebhookconfigurations') && r.verbs?.includes('patch'))
        .flatMap((r) => r.resourceNames ?? []);
      for (const d of docs.filter((x) => x.object.kind === 'MutatingWebhookConfiguration')) {
        assert.ok(patchable.includes(d.object.metadata.name), `${describeDoc(d)}: the control plane's ClusterRole cannot patch its caBundle (resourceNames: ${patchable.join(', ')})`);
        for (const w of (d.object['webhooks'] as { name: string; clientConfig: { service?: { name: string; namespace: string; port?: number } } }[] | undefined) ?? []) {
          const svc = w.clientConfig.service;
          if (!svc) continue;
          assert.deepEqual([svc.namespace, svc.name], [MESH_NAMESPACE, CONTROL_PLANE_NAME], `${describeDoc(d)} webhook ${w.name} calls another Service`);
          assert.ok(servicePorts.includes(svc.port ?? 443), `${describeDoc(d)} webhook ${w.name} calls port ${svc.port ?? 443}, which Service ${CONTROL_PLANE_NAME} does not expose (${servicePorts.join(', ')})`);
        }
      }
    });

    it('probes /healthz and /readyz on the admin port', function () {
      assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'http-admin' });
      assert.deepEqual(container.startupProbe?.httpGet, { path: '/healthz', port: 'http-admin' });
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'http-admin' });
    });

    it('runs non-root with a read-only root filesystem and no capabilities', function () {
      assert.equal(pod.securityContext?.runAsNonRoot, true);
      assert.notEqual(pod.securityContext?.runAsUser, 0);
      assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault');
      const sc = container.securityContext;
      assert.equal(sc?.readOnlyRootFilesystem, true);
      assert.equal(sc.allowPrivilegeEscalation, false);
      assert.deepEqual(sc.capabilities?.drop, ['ALL']);
      assert.equal(sc.capabilities.add, undefined);
    });
  });

  describe('kubectl apply --server-side --dry-run=server (real kube-apiserver)', function () {
    this.timeout(120_000);
    let server: ApiServer | undefined;
    const ownCrds = crdKinds(docs);

    before(async function () {
      skipWithoutApiServer(this);
      server = await startApiServer();
    });
    after(async function () {
      await server?.stop();
    });

    for (const d of ordered) {
      it(describeDoc(d), async function () {
        const kc = server!.kc;
        const { group } = splitApiVersion(d.object.apiVersion);
        const resource = await resolveResource(kc, d.object.apiVersion, d.object.kind);
        if (!resource) {
          // tsmesh's own kinds whose CRD is not written yet cannot be dry-run.
          if ((group === 'tsmesh.io' || group.endsWith('.tsmesh.io')) && !ownCrds.has(`${group}/${d.object.kind}`)) {
            console.log(`      skipped: no CustomResourceDefinition in manifests/ defines ${group}/${d.object.kind}`);
            this.skip();
          }
          assert.fail(`${describeDoc(d)}: ${d.object.apiVersion} ${d.object.kind} is not served by kube-apiserver; check apiVersion and kind`);
        }
        let res;
        try {
          res = await serverSideApply(kc, d.object, { dryRun: true });
        } catch (err) {
          if (err instanceof ApiRequestError) assert.fail(`${describeDoc(d)} was refused: ${err.message}`);
          throw err;
        }
        assert.deepEqual(res.warnings, [], `${describeDoc(d)}: the API server warned`);
        // Later documents need the namespace and the custom kinds to exist.
        if (d.object.kind === 'Namespace' || d.object.kind === 'CustomResourceDefinition') {
          await serverSideApply(kc, d.object);
          if (d.object.kind === 'CustomResourceDefinition') {
            const spec = d.object['spec'] as { group: string; names: { kind: string }; versions: { name: string; served?: boolean }[] };
            for (const v of spec.versions.filter((x) => x.served !== false)) {
              await eventually(() => resolveResource(kc, `${spec.group}/${v.name}`, spec.names.kind), 20_000, `${spec.group}/${v.name} ${spec.names.kind} to be served`);
            }
          }
        }
      });
    }

    // The checks above mean something only if the API server does refuse and warn.
    it('refuses an unknown field (Strict validation is on)', async function () {
      const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'probe', namespace: MESH_NAMESPACE }, data: {}, dataa: {} };
      await assert.rejects(serverSideApply(server!.kc, cm, { dryRun: true }), (e: unknown) => e instanceof ApiRequestError && /dataa/.test(e.message));
    });

    it(`warns about a privileged pod template in ${MESH_NAMESPACE} (Pod Security "restricted" is checked)`, async function () {
      const bad = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'privileged', namespace: MESH_NAMESPACE },
        spec: {
          selector: { matchLabels: { app: 'privileged' } },
          template: { metadata: { labels: { app: 'privileged' } }, spec: { containers: [{ name: 'c', image: 'x', securityContext: { privileged: true } }] } },
        },
      };
      const res = await serverSideApply(server!.kc, bad, { dryRun: true });
      assert.ok(res.warnings.some((w) => /restricted/.test(w)), `warnings: ${JSON.stringify(res.warnings)}`);
    });
  });
});
