// Shared by the webhook's tests: the golden inputs in this folder, the mesh
// config they are injected with, and what buildPodPatch made of each.
import { readdirSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { InjectionRefused } from '../errors.js';
import { podTemplateOf } from '../manifests.js';
import { meshConfig, type MeshConfig } from '../mesh-config.js';
import { buildPodPatch, type PatchOperation } from '../patch.js';

export const TESTDATA = new URL('./', import.meta.url);
export const TEST_VERSION = '0.0.0-test';
export const TEST_MESH: MeshConfig = meshConfig({ image: `ghcr.io/tsmesh/tsmesh:${TEST_VERSION}` });

export interface Fixture {
  name: string;
  /** The whole document (a Pod or a workload). */
  document: Record<string, any>;
  /** Its pod template (the document itself for a Pod). */
  pod: Record<string, any>;
  namespace: string;
}

/** Golden outcome: exactly one of the three keys. */
export interface GoldenResult {
  injected?: { patch: PatchOperation[]; warnings: string[] };
  skipped?: { reason: string; message: string };
  refused?: { code: string; message: string };
}

export function fixtureNames(): string[] {
  return readdirSync(TESTDATA)
    .filter((f) => f.endsWith('.yaml') && !f.endsWith('.injected.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

export function loadFixture(name: string): Fixture {
  const document = parse(readFileSync(new URL(`${name}.yaml`, TESTDATA), 'utf8'), { version: '1.1' }) as Record<string, any>;
  const pod = podTemplateOf(document);
  if (!pod) throw new Error(`testdata/${name}.yaml has no pod template`);
  return { name, document, pod, namespace: document['metadata']?.['namespace'] ?? 'default' };
}

export function injectFixture(f: Fixture, mesh: MeshConfig = TEST_MESH): GoldenResult {
  try {
    const r = buildPodPatch(f.pod, { name: f.namespace }, mesh, TEST_VERSION);
    return r.kind === 'injected' ? { injected: { patch: r.patch, warnings: r.warnings } } : { skipped: { ...r.skip } };
  } catch (e) {
    if (e instanceof InjectionRefused) return { refused: { code: e.code, message: e.message } };
    throw e;
  }
}

/** The fixture as a standalone Pod (a workload's template with the workload's name and namespace). */
export function asPod(f: Fixture, name = f.name): Record<string, any> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...structuredClone(f.pod['metadata'] ?? {}), name, namespace: f.namespace },
    spec: structuredClone(f.pod['spec']),
  };
}
