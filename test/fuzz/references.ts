// The reference proxies of the differential fuzzer, HAProxy and nginx, as
// reverse proxies in front of the recording app, each with a config the
// harness writes to its temporary folder: HAProxy in `mode http` with its
// default strictness, nginx as the usual reverse proxy (HTTP/1.1 and a
// keep-alive pool toward the app, the client's Host passed on). Both run in
// the foreground (no daemon, nginx without a master process), so the PID the
// harness holds is the proxy's own. Timeouts are their usual ones: a case
// that leaves a reference waiting for bytes shows as a wait, not as a
// refusal the fuzzer's short bound forced.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Reference {
  readonly name: 'haproxy' | 'nginx';
  /** The binary, and the Debian package that installs it. */
  readonly binary: string;
  readonly pkg: string;
  /** Writes the config under `dir` and returns the command that runs the proxy: on 127.0.0.1:`port` in front of 127.0.0.1:`appPort`, for each lane. */
  prepare(dir: string, lanes: readonly { port: number; appPort: number }[]): Promise<string[]>;
}

const HAPROXY: Reference = {
  name: 'haproxy',
  binary: '/usr/sbin/haproxy',
  pkg: 'haproxy',
  async prepare(dir, lanes) {
    const cfg = join(dir, 'haproxy.cfg');
    await writeFile(
      cfg,
      [
        'global',
        '  maxconn 512',
        'defaults',
        '  mode http',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        '  timeout http-request 10s',
        ...lanes.flatMap(({ port, appPort }, i) => [`frontend fuzz${i}`, `  bind 127.0.0.1:${port}`, `  default_backend app${i}`, `backend app${i}`, `  server app 127.0.0.1:${appPort}`]),
        '',
      ].join('\n'),
    );
    // -db: in the foreground, no daemon.
    return [this.binary, '-db', '-f', cfg];
  },
};

const NGINX: Reference = {
  name: 'nginx',
  binary: '/usr/sbin/nginx',
  pkg: 'nginx-light',
  async prepare(dir, lanes) {
    const prefix = join(dir, 'nginx');
    for (const d of ['', 'body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(prefix, d), { recursive: true });
    const conf = join(prefix, 'nginx.conf');
    await writeFile(
      conf,
      [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${join(prefix, 'nginx.pid')};`,
        'error_log stderr error;',
        'events { worker_connections 512; }',
        'http {',
        '  access_log off;',
        ...['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => `  ${d === 'body' ? 'client_body' : d}_temp_path ${join(prefix, d)};`),
        ...lanes.flatMap(({ port, appPort }, i) => [
          `  upstream app${i} { server 127.0.0.1:${appPort}; keepalive 8; }`,
          '  server {',
          `    listen 127.0.0.1:${port};`,
          '    location / {',
          `      proxy_pass http://app${i};`,
          '      proxy_http_version 1.1;',
          '      proxy_set_header Connection "";',
          '      proxy_set_header Host $http_host;',
          '    }',
          '  }',
        ]),
        '}',
        '',
      ].join('\n'),
    );
    // -e: its own error log from the start (not the package's /var/log path); -p: its prefix.
    return [this.binary, '-e', 'stderr', '-p', prefix, '-c', conf];
  },
};

export const REFERENCES: readonly Reference[] = [HAPROXY, NGINX];

/** Why the references cannot run here (one line, with the fix), or undefined when both can. */
export function referencesMissing(): string | undefined {
  const missing = REFERENCES.filter((r) => !existsSync(r.binary));
  if (missing.length === 0) return undefined;
  return `${missing.map((r) => `${r.name} (${r.binary})`).join(' and ')} not installed: apt-get install ${missing.map((r) => r.pkg).join(' ')}`;
}
