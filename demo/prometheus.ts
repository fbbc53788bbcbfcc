// `tsmesh demo --prometheus`: Debian's Prometheus scraping every sidecar's
// /metrics and the control plane's, every 2 s, on a loopback port (9090 when
// free), with its config and storage in a temporary directory that stop()
// removes along with the process (ended by its PID).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Managed, waitFor, GiveUp } from '../lib/netns.js';

export const PROMETHEUS_BINARY = '/usr/bin/prometheus';
const HOST = '127.0.0.1';

export interface PrometheusJob {
  job: string;
  /** host:port of each target, with the labels to add to its series. */
  targets: { address: string; labels: Record<string, string> }[];
}

export interface RunningPrometheus {
  url: string;
  /** Its config and storage; removed by stop(). */
  dir: string;
  stop(): Promise<void>;
}

/** 9090 if nothing listens there on loopback, else a free port. */
async function pickPort(preferred: number): Promise<number> {
  for (const port of [preferred, 0]) {
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, HOST, () => resolve(true));
    });
    if (!ok) continue;
    const chosen = (s.address() as AddressInfo).port;
    s.close();
    await once(s, 'close');
    return chosen;
  }
  throw new Error('no free loopback port for Prometheus');
}

/** The scrape configuration: one job per entry, each target a static config with its labels. */
export function prometheusConfig(jobs: readonly PrometheusJob[], interval = '2s'): string {
  const q = JSON.stringify;
  const lines = ['global:', `  scrape_interval: ${interval}`, `  evaluation_interval: ${interval}`, 'scrape_configs:'];
  for (const j of jobs) {
    lines.push(`  - job_name: ${q(j.job)}`, '    metrics_path: /metrics', '    static_configs:');
    for (const t of j.targets) {
      const labels = Object.entries(t.labels).map(([k, v]) => `${k}: ${q(v)}`).join(', ');
      lines.push(`      - targets: [${q(t.address)}]`, `        labels: { ${labels} }`);
    }
  }
  return lines.join('\n') + '\n';
}

export async function startPrometheus(jobs: readonly PrometheusJob[], binary = PROMETHEUS_BINARY): Promise<RunningPrometheus> {
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(`${binary} is not there or not executable: install Debian's package (apt-get install prometheus)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-demo-prometheus-'));
  let p: Managed | undefined;
  const stop = async (): Promise<void> => {
    await p?.stop(5000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    writeFileSync(join(dir, 'prometheus.yml'), prometheusConfig(jobs));
    const port = await pickPort(9090);
    const child = spawn(
      binary,
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=${HOST}:${port}`, '--log.level=warn'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    p = new Managed('prometheus', child, 64 * 1024);
    const url = `http://${HOST}:${port}`;
    await waitFor(
      `Prometheus to be ready on ${url}`,
      async () => {
        if (!p!.running) throw new GiveUp(`it exited:\n${p!.tail()}`);
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.ok ? true : undefined;
      },
      60_000,
      200,
    );
    return { url, dir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
