// Overload and cancellation on the real kernel: a hung app, callers that give
// up, and what the mesh does with the requests they leave behind. Every part
// is the real program: `tsmesh init` redirects, `tsmesh proxy` per pod on the
// control plane's stream (test/netns/stream-lab.ts), test/netns/mesh-app.ts
// as the app (its stdin hangs it, releases it, and reports its open
// connections and held requests), test/netns/mesh-client.ts as the caller
// in pod "web", whose connections take the redirect to web's proxy.
//
//   web     10.244.40.11  sa web   the caller
//   b1, b2  10.244.40.21-22  sa api   the app
//
// The story this guards against: a service stops answering, its callers give
// up after a second, and the mesh keeps their requests, queued or parked on
// connections to the app, until every caller is wedged behind them and
// requests abandoned long ago reach the app once it recovers.
// Skipped, with the reason printed, where network namespaces cannot be made.
import assert from 'node:assert/strict';
import type { LoadSummary } from './mesh-client.js';
import { APP_ECHO_PORT, APP_HTTP_PORT, K8S_NAMESPACE, sleep, waitFor } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';
import { StreamLab, type AppControlAck, type MeshDocument } from './stream-lab.js';

const NS = K8S_NAMESPACE;

const SERVICES: Record<string, { ip: string; pods: string[]; protocol?: string; targetPort?: number }> = {
  hang: { ip: '10.96.40.10', pods: ['b1'] },
  'hang-h2': { ip: '10.96.40.11', pods: ['b2'], protocol: 'auto' },
  'hang-tcp': { ip: '10.96.40.12', pods: ['b1'], protocol: 'tcp', targetPort: APP_ECHO_PORT },
};

const origin = (service: string): string => `http://${SERVICES[service]!.ip}`;
const brief = (s: LoadSummary): string => `${JSON.stringify(s.statuses)} ${JSON.stringify(s.meshErrors)} ${JSON.stringify(s.failures.slice(0, 3))}`;

describe('overload and cancellation between meshed pods in network namespaces (real kernel)', function () {
  this.timeout(240_000);
  let lab: StreamLab | undefined;

  function meshDocument(policies: Omit<MeshDocument, 'services'> = {}): MeshDocument {
    return {
      ...policies,
      services: Object.entries(SERVICES).map(([name, s]) => ({
        name,
        namespace: NS,
        clusterIPs: [s.ip],
        ports: [{ port: 80, name: s.protocol === 'tcp' ? 'tcp' : 'http', protocol: s.protocol ?? 'http', targetPort: s.targetPort ?? APP_HTTP_PORT }],
        endpoints: s.pods.map((p) => lab!.endpoint(p)),
      })),
    };
  }

  before(async function () {
    const why = await netnsUnavailable();
    if (why) {
      console.log(`    skipped: ${why}`);
      this.skip();
    }
    lab = await StreamLab.create({
      tag: 'ovl',
      subnet: '10.244.40',
      serviceCidr: '10.96.40.0/24',
      pods: [
        { name: 'web', host: 11, serviceAccount: 'web' },
        { name: 'b1', host: 21, serviceAccount: 'api', app: true },
        { name: 'b2', host: 22, serviceAccount: 'api', app: true },
      ],
      mesh: { services: [] },
    });
    await lab.writeMesh(meshDocument());
    await lab.waitConfig('web', 'every service', (c) => Object.keys(SERVICES).every((n) => c.services.some((s) => s.name === n && s.endpoints.length > 0)));
  });

  after(async function () {
    await lab?.destroy();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs(40));
    for (const pod of ['b1', 'b2']) await lab?.controlApp(pod, { hang: false, reset: false, delayMs: 0 });
  });

  /** Polls the app's stats until it holds no request and no connection from its proxy beyond `connections`. */
  async function appLetGo(pod: string, connections: number, ms = 5000): Promise<AppControlAck> {
    let last: AppControlAck | undefined;
    try {
      return await waitFor(
        `app ${pod} to hold no abandoned request`,
        async () => {
          last = await lab!.controlApp(pod, { stats: true });
          return last.held === 0 && last.connections <= connections ? last : undefined;
        },
        ms,
        100,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last seen: ${JSON.stringify(last)}`, { cause: e });
    }
  }

  /**
   * A hung app called at 100 req/s by callers that give up after 1 s; then,
   * while it still hangs, the app holds nothing of theirs; once it answers
   * again a fresh request succeeds at once, and nothing abandoned arrives late.
   */
  async function hungThenRecovered(service: string, pod: string, http2: boolean): Promise<void> {
    await lab!.controlApp(pod, { hang: true });
    const prefix = `/${service}-${http2 ? 'h2' : 'h1'}/`;
    const hung = await lab!.load('web', { origin: origin(service), path: `${prefix}{i}`, mode: 'rate', ratePerSecond: 100, durationMs: 5000, maxRequests: 500, timeoutMs: 1000, http2 });
    assert.equal(hung.ok, 0, `a hung app answered: ${brief(hung)}`);
    const arrived = lab!.appRequests(pod, prefix).length;
    assert.ok(arrived > 0, 'no request reached the app');
    // Every caller gave up: the proxy in front of the app lets go of every request, and of every
    // connection (HTTP/1.1) or every stream (HTTP/2: its one h2c connection to the app stays).
    await appLetGo(pod, http2 ? 1 : 0);
    await lab!.controlApp(pod, { hang: false });
    const releasedAt = Date.now();
    const fresh = await lab!.load('web', { origin: origin(service), path: `${prefix}fresh-{i}`, mode: 'closed', concurrency: 1, durationMs: 3000, maxRequests: 5, timeoutMs: 2000, http2 });
    assert.equal(fresh.ok, fresh.sent, `after the app recovered: ${brief(fresh)}`);
    await sleep(1500);
    const late = lab!.appRequests(pod, prefix).filter((r) => r.at >= releasedAt && !r.path.includes('fresh'));
    assert.deepEqual(late.map((r) => r.path), [], 'requests whose callers gave up reached the app after it recovered');
    console.log(`      ${service} (${http2 ? 'HTTP/2' : 'HTTP/1.1'}): ${hung.sent} abandoned, ${arrived} reached the hung app; fresh requests after recovery ${fresh.ok}/${fresh.sent}`);
  }

  it('HTTP/1.1 over tsmesh/mux: callers that give up take their requests with them, and the app recovers at once', async function () {
    await hungThenRecovered('hang', 'b1', false);
  });

  it('HTTP/2: a reset stream cancels the request up to the app, and the app recovers at once', async function () {
    await hungThenRecovered('hang-h2', 'b2', true);
  });
});
