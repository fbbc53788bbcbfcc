// control/leader.ts against a real kube-apiserver, with the control plane's
// own ServiceAccount token (the Lease RBAC of manifests/control-plane.yaml):
// one replica leads, a closing leader hands over at once, a crashed leader's
// Lease is taken only once it expires, and a leader that can no longer renew
// stops leading after renewDeadline.
import assert from 'node:assert/strict';
import { CoordinationV1Api, RbacAuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { microTime, startLeaderElection, type LeaderElection } from '../../control/leader.js';
import { CONTROL_PLANE_NAME, MESH_NAMESPACE } from '../../contract/names.js';
import { silentLogger } from '../../lib/log.js';
import { eventually, requestToken, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { applyOrder, kubeConfigWithToken, readManifests, serverSideApply } from './manifests.js';

const NS = MESH_NAMESPACE;
const TIMING = { leaseDurationSeconds: 2, renewDeadlineMs: 1200, retryPeriodMs: 200 };

interface Replica {
  id: string;
  election: LeaderElection;
  events: string[];
}

describe('leader election over a Lease (real kube-apiserver, the control plane\'s RBAC)', function () {
  this.timeout(60_000);
  let server: ApiServer | undefined;
  let own: KubeConfig;
  const replicas: Replica[] = [];

  const start = (id: string, kc = own): Replica => {
    const events: string[] = [];
    const election = startLeaderElection({
      kc,
      namespace: NS,
      identity: id,
      log: silentLogger,
      onStartedLeading: () => events.push('started'),
      onStoppedLeading: () => events.push('stopped'),
      ...TIMING,
    });
    const r = { id, election, events };
    replicas.push(r);
    return r;
  };
  const deleteLease = async (): Promise<void> => {
    await server!.kc.makeApiClient(CoordinationV1Api).deleteNamespacedLease({ name: CONTROL_PLANE_NAME, namespace: NS }).catch(() => undefined);
  };

  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
    for (const d of applyOrder(readManifests().filter((x) => x.file === 'namespace.yaml' || x.file === 'control-plane.yaml'))) await serverSideApply(server.kc, d.object);
    own = kubeConfigWithToken(server.kc, (await requestToken(server.kc, NS, 'tsmesh-control-plane', [], 3600)).token, 'tsmesh-control-plane');
  });
  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.election.close();
    if (server) await deleteLease();
  });
  after(async () => {
    await server?.stop();
  });

  it('writes MicroTime as the API server parses it', function () {
    assert.equal(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), '2026-01-02T03:04:05.678000Z');
  });

  it('one replica of two leads, and the other knows which', async function () {
    const a = start('replica-a');
    const b = start('replica-b');
    const leader = await eventually(async () => replicas.find((r) => r.election.isLeader()), 5000, 'a leader');
    const other = leader === a ? b : a;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(other.election.isLeader(), false);
    assert.equal(other.election.leader(), leader.id);
    assert.deepEqual(leader.events, ['started']);
    assert.deepEqual(other.events, []);
  });

  it('a leader that closes releases the Lease, and the other takes over within a retry period, not a lease duration', async function () {
    const a = start('replica-a');
    await eventually(async () => (a.election.isLeader() ? true : undefined), 5000, 'a to lead');
    const b = start('replica-b');
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await a.election.close();
    assert.deepEqual(a.events, ['started', 'stopped']);
    await eventually(async () => (b.election.isLeader() ? true : undefined), 5000, 'b to lead');
    const took = Date.now() - t0;
    assert.ok(took < TIMING.leaseDurationSeconds * 1000, `took ${took} ms`);
    const lease = await server!.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: CONTROL_PLANE_NAME, namespace: NS });
    assert.equal(lease.spec?.holderIdentity, 'replica-b');
    assert.equal(lease.spec?.leaseTransitions, 1);
  });

  it('the Lease of a leader that crashed is taken once it has not been renewed for leaseDuration', async function () {
    await server!.kc.makeApiClient(CoordinationV1Api).createNamespacedLease({
      namespace: NS,
      body: { metadata: { name: CONTROL_PLANE_NAME }, spec: { holderIdentity: 'crashed', leaseDurationSeconds: 2, renewTime: microTime(Date.now()) as unknown as Date } },
    });
    const t0 = Date.now();
    const b = start('replica-b');
    await eventually(async () => (b.election.leader() === 'crashed' ? true : undefined), 2000, 'b to see the crashed holder');
    await eventually(async () => (b.election.isLeader() ? true : undefined), 10_000, 'b to lead');
    const took = Date.now() - t0;
    assert.ok(took >= 2000 - 50 && took < 2000 + 4 * TIMING.retryPeriodMs + 1000, `took ${took} ms`);
  });

  it('a leader that can no longer renew (its RBAC removed) stops leading after renewDeadline', async function () {
    const rbac = server!.kc.makeApiClient(RbacAuthorizationV1Api);
    const a = start('replica-a');
    await eventually(async () => (a.election.isLeader() ? true : undefined), 5000, 'a to lead');
    const binding = await rbac.readNamespacedRoleBinding({ name: 'tsmesh-control-plane', namespace: NS });
    await rbac.deleteNamespacedRoleBinding({ name: 'tsmesh-control-plane', namespace: NS });
    try {
      const t0 = Date.now();
      await eventually(async () => (a.election.isLeader() ? undefined : true), 10_000, 'a to stop leading');
      const took = Date.now() - t0;
      assert.ok(took >= TIMING.renewDeadlineMs - 2 * TIMING.retryPeriodMs && took < TIMING.renewDeadlineMs + 5 * TIMING.retryPeriodMs + 1000, `took ${took} ms`);
      assert.deepEqual(a.events, ['started', 'stopped']);
    } finally {
      await rbac.createNamespacedRoleBinding({ namespace: NS, body: { metadata: { name: binding.metadata!.name!, labels: binding.metadata!.labels! }, roleRef: binding.roleRef, subjects: binding.subjects! } });
    }
    await eventually(async () => (a.election.isLeader() ? true : undefined), 10_000, 'a to lead again once it may');
  });
});
