import type { ProxyConfig } from '../../contract/proxy-config.js';

/** Where the running config comes from: a file, or the control plane's stream. */
export interface ConfigSource {
  /** The config in force, or undefined until the first one arrives. */
  current(): ProxyConfig | undefined;
  /** Called with every new config; returns an unsubscribe function. */
  onChange(listener: (config: ProxyConfig) => void): () => void;
  close(): void;
}
