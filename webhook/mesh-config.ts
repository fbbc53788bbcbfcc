// What injection needs to know about the mesh: where the control plane is,
// which image to run, the proxy's default resources. The control plane holds
// one; `tsmesh inject` builds one from its flags.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { validateTrustDomain } from '../contract/spiffe.js';
import { LOG_LEVELS, type LogLevel } from '../lib/log.js';
import { PROXY_DEFAULTS } from '../contract/env.js';
import { MeshConfigError } from './errors.js';
import { parseQuantity, QUANTITY_HINT } from './quantity.js';

export const IMAGE_PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type ImagePullPolicy = (typeof IMAGE_PULL_POLICIES)[number];

/** The proxy container's requests and limits (Kubernetes quantities). No CPU limit unless set: throttling a proxy slows every request. */
export interface ProxyResources {
  readonly cpuRequest: string;
  readonly memoryRequest: string;
  readonly memoryLimit: string;
  readonly cpuLimit?: string;
}

export interface MeshConfig {
  readonly trustDomain: string;
  /** host:port of the control plane's TLS port (CA and discovery). */
  readonly controlPlaneAddress: string;
  /** The tsmesh image; both injected containers run it (`tsmesh init ...`, `tsmesh proxy`). */
  readonly image: string;
  readonly imagePullPolicy: ImagePullPolicy;
  readonly proxyResources: ProxyResources;
  /** The proxy's log level unless the pod sets tsmesh.io/proxy-log-level. */
  readonly logLevel: LogLevel;
}

/** The version of this package, read from its package.json (the source tree's, or the installed one above dist/). */
export const TSMESH_VERSION: string = readPackageVersion();

function readPackageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tsmesh' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; look one folder up
    }
    dir = dirname(dir);
  }
  return '0.0.0-unknown';
}

export const IMAGE_REPOSITORY = 'ghcr.io/tsmesh/tsmesh';

export const DEFAULT_PROXY_RESOURCES: ProxyResources = { cpuRequest: '100m', memoryRequest: '64Mi', memoryLimit: '256Mi' };

export function defaultMeshConfig(version: string = TSMESH_VERSION): MeshConfig {
  return {
    trustDomain: PROXY_DEFAULTS.TRUST_DOMAIN,
    controlPlaneAddress: PROXY_DEFAULTS.CONTROL_PLANE_ADDRESS,
    image: `${IMAGE_REPOSITORY}:${version}`,
    imagePullPolicy: 'IfNotPresent',
    proxyResources: DEFAULT_PROXY_RESOURCES,
    logLevel: PROXY_DEFAULTS.LOG_LEVEL,
  };
}

/** Settings to lay over the defaults; an undefined one keeps its default (an unset flag). */
type Loose<T> = { [K in keyof T]?: T[K] | undefined };
export type MeshConfigInput = Loose<Omit<MeshConfig, 'proxyResources'>> & { proxyResources?: Loose<ProxyResources> | undefined };

/**
 * The defaults with `input` laid over them, checked: every error names the
 * setting, the value and the expected form.
 */
export function meshConfig(input: MeshConfigInput = {}, base: MeshConfig = defaultMeshConfig()): MeshConfig {
  const { proxyResources = {}, ...rest } = input;
  const config: MeshConfig = {
    ...base,
    ...definedOnly<Omit<MeshConfig, 'proxyResources'>>(rest),
    proxyResources: { ...base.proxyResources, ...definedOnly<ProxyResources>(proxyResources) },
  };
  checkMeshConfig(config);
  return config;
}

/** The entries whose value is set; the Loose<T> of an input becomes a plain Partial<T>. */
function definedOnly<T extends object>(o: Loose<T>): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function checkMeshConfig(c: MeshConfig): void {
  const fail = (setting: string, value: unknown, expected: string): never => {
    throw new MeshConfigError(`mesh config ${setting}: ${JSON.stringify(value)} is not valid; ${expected}`);
  };
  try {
    validateTrustDomain(c.trustDomain);
  } catch (e) {
    fail('trustDomain', c.trustDomain, (e as Error).message);
  }
  const address = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(c.controlPlaneAddress);
  if (!address || Number(address[2]) < 1 || Number(address[2]) > 65535)
    fail('controlPlaneAddress', c.controlPlaneAddress, `expected host:port, like ${PROXY_DEFAULTS.CONTROL_PLANE_ADDRESS}`);
  if (typeof c.image !== 'string' || !/^[^\s]+$/.test(c.image)) fail('image', c.image, `expected an image reference like ${IMAGE_REPOSITORY}:${TSMESH_VERSION}`);
  if (!(IMAGE_PULL_POLICIES as readonly string[]).includes(c.imagePullPolicy))
    fail('imagePullPolicy', c.imagePullPolicy, `expected ${IMAGE_PULL_POLICIES.join(', ')}`);
  if (!(LOG_LEVELS as readonly string[]).includes(c.logLevel)) fail('logLevel', c.logLevel, `expected ${LOG_LEVELS.join(', ')}`);
  for (const key of ['cpuRequest', 'memoryRequest', 'memoryLimit', 'cpuLimit'] as const) {
    const v = c.proxyResources[key];
    if (v === undefined && key === 'cpuLimit') continue;
    if (typeof v !== 'string' || parseQuantity(v) === undefined) fail(`proxyResources.${key}`, v, QUANTITY_HINT);
  }
  const { memoryRequest, memoryLimit } = c.proxyResources;
  if (parseQuantity(memoryRequest)! > parseQuantity(memoryLimit)!)
    fail('proxyResources.memoryRequest', memoryRequest, `it is above proxyResources.memoryLimit ${memoryLimit}; a request must not exceed its limit`);
}

const CONFIG_KEYS = ['trustDomain', 'controlPlaneAddress', 'image', 'imagePullPolicy', 'proxyResources', 'logLevel'] as const;
const RESOURCE_KEYS = ['cpuRequest', 'memoryRequest', 'memoryLimit', 'cpuLimit'] as const;

/** Reads a mesh config document (a config file's parsed YAML or JSON): known keys only, string values. */
export function parseMeshConfigInput(doc: unknown, source = 'mesh config'): MeshConfigInput {
  const fail = (message: string): never => {
    throw new MeshConfigError(`${source}: ${message}`);
  };
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) return fail('expected a map of settings');
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) fail(`unknown setting ${JSON.stringify(key)}; known: ${CONFIG_KEYS.join(', ')}`);
    if (key === 'proxyResources') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('proxyResources must be a map');
      for (const [k, v] of Object.entries(value as object)) {
        if (!(RESOURCE_KEYS as readonly string[]).includes(k)) fail(`unknown setting proxyResources.${k}; known: ${RESOURCE_KEYS.join(', ')}`);
        if (typeof v !== 'string') fail(`proxyResources.${k} must be a string (a quantity like 100m or 64Mi)`);
      }
      out[key] = value;
    } else {
      if (typeof value !== 'string') fail(`${key} must be a string`);
      out[key] = value;
    }
  }
  return out as MeshConfigInput;
}

/** A mesh config file's text (YAML or JSON), as `tsmesh inject --config` reads it; `source` names it in errors. */
export function parseMeshConfigText(text: string, source: string): MeshConfigInput {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new MeshConfigError(`${source}: not valid YAML: ${(e as Error).message}`);
  }
  return parseMeshConfigInput(doc, source);
}
