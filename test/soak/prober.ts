// Asks every proxy's /ready the way kubelet does, from outside the pods: a
// new connection to the pod's address on the admin port each time, a 1 s
// timeout. One long-lived process for all of them, in a namespace without
// redirects (the control plane's), since a command started per probe in
// each pod's namespace cost more CPU than the proxies it watched.
//   node --import tsx test/soak/prober.ts INTERVAL_MS name=ip:port ...
// Prints one line per probe: {"probe":name,"at":ms,"status":200|0,"ms":N,"error"?:...}.
import { connect } from 'node:net';

const TIMEOUT_MS = 1000;

function probe(host: string, port: number): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let answer = '';
    let error: string | undefined;
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('error', (e) => (error = e.message));
    s.write(`GET /ready HTTP/1.1\r\nhost: ${host}\r\nuser-agent: kube-probe/1.33\r\nconnection: close\r\n\r\n`);
    const timer = setTimeout(() => {
      error ??= `no answer within ${TIMEOUT_MS} ms`;
      s.destroy();
    }, TIMEOUT_MS);
    s.once('close', () => {
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0);
      resolve(status === 0 ? { status, error: error ?? 'closed without an answer' } : { status });
    });
  });
}

const [interval = '1000', ...targets] = process.argv.slice(2);
const parsed = targets.map((t) => {
  const [name = '', address = ''] = t.split('=');
  const at = address.lastIndexOf(':');
  return { name, host: address.slice(0, at), port: Number(address.slice(at + 1)) };
});
process.on('SIGTERM', () => process.exit(0));
for (;;) {
  const next = Date.now() + Number(interval);
  await Promise.all(
    parsed.map(async ({ name, host, port }) => {
      const at = Date.now();
      const r = await probe(host, port);
      console.log(JSON.stringify({ probe: name, at, ms: Date.now() - at, ...r }));
    }),
  );
  await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
}
