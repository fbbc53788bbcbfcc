// `tsmesh proxy --config-file`: the config from a file (YAML or JSON),
// re-read when it changes. A file that fails to parse or validate is logged
// and ignored: the last good config stays in force.
import { createRequire } from 'node:module';
import type * as yaml from 'yaml';
import type { Logger } from '../../lib/log.js';
import { parseProxyConfig } from '../../contract/validate.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import type { ConfigSource } from './source.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { readFileSync, unwatchFile, watchFile } = process.getBuiltinModule('node:fs');

const require = createRequire(import.meta.url);

/** JSON (what generators write) is parsed as JSON; the YAML parser, 5 MB of the proxy's memory, is loaded only for YAML. */
function parseDocument(text: string): unknown {
  if (text.trimStart().startsWith('{')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Flow-style YAML also starts with "{": let the YAML parser read it and report.
    }
  }
  return (require('yaml') as typeof yaml).parse(text) as unknown;
}

export function readConfigFile(path: string): ProxyConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config file ${path}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try {
    doc = parseDocument(text);
  } catch (e) {
    throw new Error(`config file ${path} is not valid YAML or JSON: ${(e as Error).message}`, { cause: e });
  }
  try {
    return parseProxyConfig(doc);
  } catch (e) {
    throw new Error(`config file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export class FileConfigSource implements ConfigSource {
  private config: ProxyConfig;
  private readonly listeners = new Set<(c: ProxyConfig) => void>();

  /** Reads `path` once (throwing when the first read fails) and polls it for changes. */
  constructor(
    private readonly path: string,
    private readonly log: Logger,
    pollMs = 500,
  ) {
    this.config = readConfigFile(path);
    watchFile(path, { interval: pollMs, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) this.reload();
    });
  }

  current(): ProxyConfig {
    return this.config;
  }

  onChange(listener: (c: ProxyConfig) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private reload(): void {
    try {
      const next = readConfigFile(this.path);
      this.config = next;
      this.log.info('config reloaded', { version: next.version, services: next.services.length });
      for (const l of this.listeners) l(next);
    } catch (e) {
      this.log.error('config reload failed; keeping the last good config', { error: (e as Error).message, version: this.config.version });
    }
  }

  close(): void {
    unwatchFile(this.path);
    this.listeners.clear();
  }
}
