// The server side of `npm run bench:webhook`, in its own process:
//   tsx webhook/bench/serve.ts webhook|floor KEY_FILE CERT_FILE
// "webhook" runs the real webhook (startWebhookServer); "floor" answers every
// POST with a fixed allowed review over the same TLS, without reading the body
// as a review: what HTTPS and JSON parsing alone cost, for comparison.
// Prints "port=<n>" on stdout once listening; stops on SIGTERM.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createLogger } from '../../lib/log.js';
import { startWebhookServer } from '../app.js';
import { defaultMeshConfig } from '../mesh-config.js';

const [mode, keyFile, certFile] = process.argv.slice(2);
if ((mode !== 'webhook' && mode !== 'floor') || !keyFile || !certFile) {
  console.error('usage: serve.ts webhook|floor KEY_FILE CERT_FILE');
  process.exit(2);
}
const tls = { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };

let close: () => Promise<void>;
if (mode === 'webhook') {
  const running = await startWebhookServer({ mesh: defaultMeshConfig(), registry: new Registry(), log: createLogger('webhook', 'warn'), tls, host: '127.0.0.1', port: 0 });
  console.log(`port=${running.port}`);
  close = running.close;
} else {
  const server = createServer({ ...tls, minVersion: 'TLSv1.2' }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request: { uid: string } };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  console.log(`port=${(server.address() as AddressInfo).port}`);
  close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
}
process.once('SIGTERM', () => void close().then(() => process.exit(0)));
