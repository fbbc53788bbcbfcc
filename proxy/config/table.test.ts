// The routing table: what an address:port an app dialled reaches. ClusterIPs
// reach a service port with its ready endpoints; a meshed endpoint's own
// address reaches that endpoint alone (pinned), by the rule of table.ts when
// several Services list it; a meshed pod's other ports are known by its
// address; non-meshed endpoints are not indexed at all.
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../contract/validate.js';
import type { ServiceConfig } from '../../contract/proxy-config.js';
import { buildRoutingTable, lookupTarget as lookup, type RoutingTable, type ServiceTarget } from './table.js';

const ID = (sa: string): string => `spiffe://cluster.local/ns/shop/sa/${sa}`;

function table(services: Partial<ServiceConfig>[]): RoutingTable {
  return buildRoutingTable(
    parseProxyConfig({
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'ProxyConfig',
      services: services.map((s) => ({ namespace: 'shop', clusterIPs: [], ports: [], endpoints: [], ...s })),
    }),
  );
}

/** lookupTarget for "ip:port" (IPv6 without brackets). */
const lookupTarget = (t: RoutingTable, at: string): ServiceTarget | undefined => lookup(t, at.slice(0, at.lastIndexOf(':')), Number(at.slice(at.lastIndexOf(':') + 1)));

/** What `ip:port` reaches, in short: "service:port -> address:port identity" per endpoint, pinned or not. */
function describeTarget(t: RoutingTable, at: string): string | undefined {
  const target = lookupTarget(t, at);
  if (!target) return undefined;
  const eps = target.endpoints.map((e) => `${e.address}:${e.port} ${e.identity ?? 'plain'}`).join(', ');
  return `${target.key}:${target.port.port}${target.pinned ? ' pinned' : ''} -> ${eps}`;
}

// A StatefulSet "db" (two pods, sa db) behind a headless Service and a ClusterIP Service, and
// "web" (a meshed pod and a plain one) behind a ClusterIP Service.
const DB_HEADLESS: Partial<ServiceConfig> = {
  name: 'db-headless',
  ports: [
    { port: 5432, name: 'tcp-pg', protocol: 'tcp', targetPort: 5432 },
    { port: 8008, name: 'http-admin', protocol: 'http', targetPort: 8008 },
  ],
  endpoints: [
    { address: '10.244.1.10', identity: ID('db') },
    { address: '10.244.2.11', identity: ID('db'), ready: false },
  ],
};
const DB: Partial<ServiceConfig> = {
  name: 'db',
  clusterIPs: ['10.96.0.30'],
  ports: [{ port: 5432, name: 'tcp-pg', protocol: 'tcp', targetPort: 5432 }],
  endpoints: [
    { address: '10.244.1.10', identity: ID('db') },
    { address: '10.244.2.11', identity: ID('db'), ready: false },
  ],
};
const WEB: Partial<ServiceConfig> = {
  name: 'web',
  clusterIPs: ['10.96.0.20'],
  ports: [{ port: 80, name: 'http', protocol: 'auto', targetPort: 8080 }],
  endpoints: [
    { address: '10.244.1.5', identity: ID('web') },
    { address: '10.244.1.6', identity: ID('web'), ports: { http: 9090 } },
    { address: '10.244.3.7' },
  ],
};

describe('proxy/config/table: the routing table', function () {
  it('a ClusterIP:port reaches the service port and its ready endpoints, balanced', function () {
    const t = table([WEB, DB]);
    assert.equal(describeTarget(t, '10.96.0.20:80'), `web.shop:80 -> 10.244.1.5:8080 ${ID('web')}, 10.244.1.6:9090 ${ID('web')}, 10.244.3.7:8080 plain`);
    assert.equal(describeTarget(t, '10.96.0.30:5432'), `db.shop:5432 -> 10.244.1.10:5432 ${ID('db')}`);
    assert.equal(describeTarget(t, '10.96.0.20:8080'), undefined);
  });

  it('a meshed endpoint\'s own address:port reaches that endpoint alone, with its identity and its own port', function () {
    const t = table([WEB]);
    assert.equal(describeTarget(t, '10.244.1.5:8080'), `web.shop:80 pinned -> 10.244.1.5:8080 ${ID('web')}`);
    // The endpoint's port on that pod, not the service's targetPort.
    assert.equal(describeTarget(t, '10.244.1.6:9090'), `web.shop:80 pinned -> 10.244.1.6:9090 ${ID('web')}`);
    assert.equal(lookupTarget(t, '10.244.1.6:8080'), undefined);
    const pinned = lookupTarget(t, '10.244.1.5:8080')!;
    assert.equal(pinned.port.protocol, 'auto');
    assert.equal(pinned.pinned, pinned.endpoints[0]);
  });

  it('a pod that is not ready is still reached by its address (a headless Service may publish it)', function () {
    const t = table([DB_HEADLESS]);
    assert.equal(describeTarget(t, '10.244.2.11:5432'), `db-headless.shop:5432 pinned -> 10.244.2.11:5432 ${ID('db')}`);
    assert.equal(describeTarget(t, '10.244.2.11:8008'), `db-headless.shop:8008 pinned -> 10.244.2.11:8008 ${ID('db')}`);
    assert.equal(lookupTarget(t, '10.244.2.11:8008')!.port.protocol, 'http');
  });

  it('an endpoint without an identity (no sidecar) is not indexed: its address passes through', function () {
    const t = table([WEB]);
    assert.equal(lookupTarget(t, '10.244.3.7:8080'), undefined);
    assert.equal(t.pods.get('10.244.3.7'), undefined);
  });

  it('a pod listed by several Services: headless first, then by namespace and name, whatever the config\'s order', function () {
    for (const order of [
      [DB, DB_HEADLESS],
      [DB_HEADLESS, DB],
    ]) {
      const t = table(order);
      assert.equal(describeTarget(t, '10.244.1.10:5432'), `db-headless.shop:5432 pinned -> 10.244.1.10:5432 ${ID('db')}`);
    }
    // Two Services with cluster IPs: by namespace, then name.
    const a = { ...DB, name: 'b-db', clusterIPs: ['10.96.0.31'] };
    const b = { ...DB, name: 'a-db', namespace: 'zeta', clusterIPs: ['10.96.0.32'] };
    const c = { ...DB, name: 'c-db', namespace: 'alpha', clusterIPs: ['10.96.0.33'] };
    for (const order of [
      [a, b, c],
      [c, b, a],
      [b, a, c],
    ])
      assert.equal(lookupTarget(table(order), '10.244.1.10:5432')!.key, 'c-db.alpha');
    assert.equal(lookupTarget(table([a, b]), '10.244.1.10:5432')!.key, 'b-db.shop');
  });

  it('the rule picks among the Services whose port on that pod is the dialled one', function () {
    // db-headless lists 8008, db does not: 8008 is db-headless's; 5432 too (headless first).
    const t = table([DB, { ...DB_HEADLESS, name: 'zz-headless', ports: [DB_HEADLESS.ports![1]!] }]);
    assert.equal(lookupTarget(t, '10.244.1.10:8008')!.key, 'zz-headless.shop');
    assert.equal(lookupTarget(t, '10.244.1.10:5432')!.key, 'db.shop');
  });

  it('a meshed pod is known by its address for the ports no Service names, with the first Service\'s name', function () {
    const t = table([WEB, DB, DB_HEADLESS]);
    const pod = (address: string) => {
      const p = t.pods.get(address);
      return p && { address: p.address, identity: p.identity, key: p.key };
    };
    assert.deepEqual(pod('10.244.1.10'), { address: '10.244.1.10', identity: ID('db'), key: 'db-headless.shop' });
    assert.deepEqual(pod('10.244.1.6'), { address: '10.244.1.6', identity: ID('web'), key: 'web.shop' });
    assert.equal(t.pods.get('10.244.1.6')!.opaqueMtls(9999), true);
    assert.equal(lookupTarget(t, '10.244.1.10:9999'), undefined);
  });

  it('a headless Service without ports makes its pods known by address, with no L7 port', function () {
    const t = table([{ name: 'peers', ports: [], endpoints: [{ address: '10.244.4.1', identity: ID('peer') }] }]);
    assert.deepEqual(t.pods.get('10.244.4.1')?.ports, []);
    assert.equal(t.pods.get('10.244.4.1')?.opaqueMtls(2380), true);
    assert.equal(t.pods.get('10.244.4.1')?.identity, ID('peer'));
    assert.equal(t.pods.get('10.244.4.1')?.key, 'peers.shop');
  });

  it('ports a meshed pod\'s sidecar does not capture (its skip-inbound-ports, the admin port) are reached in plain TCP', function () {
    const t = table([
      {
        name: 'db',
        clusterIPs: ['10.96.0.30'],
        ports: [
          { port: 5432, name: 'tcp-pg', protocol: 'tcp', targetPort: 5432 },
          { port: 9187, name: 'metrics', protocol: 'http', targetPort: 9187 },
          { port: 15020, name: 'proxy-metrics', protocol: 'http', targetPort: 15020 },
        ],
        endpoints: [{ address: '10.244.1.10', identity: ID('db'), skipInboundPorts: ['9187', '9400-9500'] }],
      },
    ]);
    // Through the ClusterIP: the endpoint without an identity on those ports, so plain.
    assert.equal(describeTarget(t, '10.96.0.30:5432'), `db.shop:5432 -> 10.244.1.10:5432 ${ID('db')}`);
    assert.equal(describeTarget(t, '10.96.0.30:9187'), 'db.shop:9187 -> 10.244.1.10:9187 plain');
    assert.equal(describeTarget(t, '10.96.0.30:15020'), 'db.shop:15020 -> 10.244.1.10:15020 plain');
    // By the pod's address: not indexed (passed through), nor carried as opaque mTLS.
    assert.equal(lookupTarget(t, '10.244.1.10:9187'), undefined);
    assert.equal(lookupTarget(t, '10.244.1.10:15020'), undefined);
    const pod = t.pods.get('10.244.1.10')!;
    assert.deepEqual([9399, 9400, 9450, 9500, 9501, 15020, 15021].map((p) => pod.opaqueMtls(p)), [true, false, false, false, true, false, true]);
  });

  it('a loopback endpoint is reached by its address:port only: loopback names no pod', function () {
    const t = table([{ name: 'local', ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: 15006 }], endpoints: [{ address: '127.0.0.1', identity: ID('local') }] }]);
    assert.equal(describeTarget(t, '127.0.0.1:15006'), `local.shop:80 pinned -> 127.0.0.1:15006 ${ID('local')}`);
    assert.equal(t.pods.get('127.0.0.1')!.opaqueMtls(8080), false);
  });

  it('IPv6 endpoints are keyed without brackets, as ClusterIPs are', function () {
    const t = table([{ name: 'v6', clusterIPs: ['fd00:10:96::20'], ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: 8080 }], endpoints: [{ address: 'fd00:10:244::5', identity: ID('v6') }] }]);
    assert.equal(describeTarget(t, 'fd00:10:244::5:8080'), `v6.shop:80 pinned -> fd00:10:244::5:8080 ${ID('v6')}`);
    assert.equal(describeTarget(t, 'fd00:10:96::20:80'), `v6.shop:80 -> fd00:10:244::5:8080 ${ID('v6')}`);
  });
});
