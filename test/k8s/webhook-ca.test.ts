// The control plane keeps the injector's caBundle equal to the mesh roots.
import assert from 'node:assert/strict';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import { syncWebhookCaBundle } from '../../control/webhook-ca.js';
import { WEBHOOK_CONFIGURATION_NAME } from '../../contract/names.js';
import { silentLogger } from '../../lib/log.js';
import { registerMutatingWebhook, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';

describe('injector caBundle (real kube-apiserver)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  before(async function () {
    skipWithoutApiServer(this);
    server = await startApiServer();
  });
  after(async () => server?.stop());

  it('sets the trust bundle as caBundle once, and changes nothing when it already matches', async () => {
    await registerMutatingWebhook(server!.kc, { name: WEBHOOK_CONFIGURATION_NAME, url: 'https://127.0.0.1:9443/inject', caBundle: Buffer.from('stale').toString('base64') });
    const { ca } = await newRootCa();
    const bundle = ca.trustBundle.toPem();
    assert.equal(await syncWebhookCaBundle(server!.kc, bundle, silentLogger), 1);
    const stored = await server!.kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
    assert.equal(Buffer.from(stored.webhooks![0]!.clientConfig.caBundle!, 'base64').toString(), bundle);
    assert.equal(await syncWebhookCaBundle(server!.kc, bundle, silentLogger), 0);
  });
});
