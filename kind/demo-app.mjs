// The demo's app, one file for both roles (ROLE=frontend or backend), with
// nothing of the mesh in it: plain HTTP on 8080. kind/up.sh puts it into
// ConfigMap demo-app; the pods run it with the node of the tsmesh image.
import { createServer } from 'node:http';
import { hostname } from 'node:os';

const role = process.env.ROLE ?? 'backend';
const version = process.env.VERSION ?? 'v1';
const backendUrl = process.env.BACKEND_URL ?? 'http://backend:8080/';
const port = Number(process.env.PORT ?? 8080);
const MAX_CALLS = 10_000;

async function callBackend() {
  const res = await fetch(backendUrl, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  if (!res.ok) throw new Error(`backend answered ${res.status}: ${body.slice(0, 200)}`);
  return JSON.parse(body);
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/healthz') return reply(res, 200, { ok: true });
  if (role === 'backend') return reply(res, 200, { service: 'backend', version, pod: hostname() });
  try {
    if (url.pathname === '/split') {
      const n = Math.min(Math.max(Number.parseInt(url.searchParams.get('n') ?? '100', 10) || 0, 1), MAX_CALLS);
      const counts = { requests: n, errors: 0, lastError: undefined };
      for (let i = 0; i < n; i++) {
        try {
          const b = await callBackend();
          counts[b.version] = (counts[b.version] ?? 0) + 1;
        } catch (e) {
          counts.errors++;
          counts.lastError = e.message;
        }
      }
      return reply(res, 200, counts);
    }
    return reply(res, 200, { service: 'frontend', pod: hostname(), backend: await callBackend() });
  } catch (e) {
    return reply(res, 502, { error: e.message });
  }
});
server.listen(port, () => console.log(JSON.stringify({ msg: 'listening', role, version, port })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
