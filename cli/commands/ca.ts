// tsmesh ca init | issue | rotate: operator tooling for the mesh's CA material.
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRootCa } from '../../ca/root.js';
import { CA_FILES, describeCertificate, loadCaFromDir, writeRootCa } from '../../ca/material.js';
import { parseSpiffeId, DEFAULT_TRUST_DOMAIN } from '../../contract/spiffe.js';
import { parseDuration } from '../../lib/duration.js';
import { dirStore, rotateFinish, rotateStart, rotateStatus, secretStore, type CaStore } from '../../install/ca-rotate.js';
import { Kube, loadKubeConfig } from '../../install/kube.js';
import { KUBE_FLAGS, parseFlags, required, UsageError, type Command } from '../command.js';

const USAGE = `Usage:
  tsmesh ca init --out DIR [--trust-domain TD] [--validity 87600h]
      Write a new root CA (${CA_FILES.rootCert}, ${CA_FILES.rootKey}) into DIR.
  tsmesh ca issue --ca DIR --spiffe-id ID [--ttl 1h] --out DIR
      Issue a workload certificate: key.pem, cert.pem (leaf and chain), bundle.pem (roots).
  tsmesh ca rotate [status] [--ca-dir DIR] [--admin-address HOST:PORT]...
      The roots in force, whether a rotation runs, and what each control plane waits for.
  tsmesh ca rotate start [--ca-dir DIR] [--overlap 2m] [--validity 87600h] [--root-key-out FILE] [--dry-run]
      Add a new root beside the old one; the control planes move every proxy onto it, live.
  tsmesh ca rotate finish [--ca-dir DIR] --admin-address HOST:PORT... [--wait 5m] [--force] [--dry-run]
      Remove the old root once every control plane named says ready-to-retire.
  Without --ca-dir, rotate works on Secret tsmesh-ca (--kubeconfig FILE, --context NAME).`;

async function init(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { out: { type: 'string' }, 'trust-domain': { type: 'string' }, validity: { type: 'string' } });
  if (values.help) return help();
  const out = required(values.out, '--out');
  const td = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
  const days = values.validity ? parseDuration(values.validity, '--validity') / 86_400_000 : undefined;
  const root = await createRootCa(td, days);
  await writeRootCa(out, root);
  console.log(`wrote ${join(out, CA_FILES.rootCert)} and ${join(out, CA_FILES.rootKey)}`);
  console.log(describeCertificate(root.certPem));
  return 0;
}

async function issue(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ca: { type: 'string' }, 'spiffe-id': { type: 'string' }, ttl: { type: 'string' }, out: { type: 'string' } });
  if (values.help) return help();
  const caDir = required(values.ca, '--ca');
  const out = required(values.out, '--out');
  const spiffeId = required(values['spiffe-id'], '--spiffe-id');
  const { trustDomain } = parseSpiffeId(spiffeId);
  const ttlSeconds = values.ttl ? parseDuration(values.ttl, '--ttl') / 1000 : undefined;
  const ca = await loadCaFromDir(caDir, { trustDomain, ...(ttlSeconds ? { ttlSeconds } : {}) });
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = ca.issue(publicKey.export({ type: 'spki', format: 'der' }), { spiffeId });
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await writeFile(join(out, 'cert.pem'), issued.certChainPem);
  await writeFile(join(out, 'bundle.pem'), issued.trustBundlePem);
  console.log(`wrote ${join(out, 'key.pem')}, ${join(out, 'cert.pem')}, ${join(out, 'bundle.pem')}`);
  console.log(`${spiffeId}: serial ${issued.serialNumber}, valid ${issued.notBefore.toISOString()} .. ${issued.notAfter.toISOString()}`);
  return 0;
}

const ROTATE_FLAGS = {
  'ca-dir': { type: 'string' },
  'admin-address': { type: 'string', multiple: true },
  'trust-domain': { type: 'string' },
  overlap: { type: 'string' },
  validity: { type: 'string' },
  'root-key-out': { type: 'string' },
  wait: { type: 'string' },
  force: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  ...KUBE_FLAGS,
} as const;

async function rotate(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  const sub = first === undefined || first.startsWith('-') ? 'status' : first;
  const { values } = parseFlags(first === sub ? rest : argv, ROTATE_FLAGS);
  if (values.help) return help();
  const store: CaStore = values['ca-dir'] ? dirStore(values['ca-dir']) : secretStore(new Kube(loadKubeConfig(values.kubeconfig, values.context)));
  const addresses = values['admin-address'] ?? [];
  const print = (line: string): void => console.log(line);
  switch (sub) {
    case 'status':
      await rotateStatus(store, addresses, print);
      return 0;
    case 'start':
      await rotateStart(
        store,
        {
          trustDomain: values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN,
          ...(values.overlap ? { overlapSeconds: parseDuration(values.overlap, '--overlap') / 1000 } : {}),
          ...(values.validity ? { rootValidityDays: parseDuration(values.validity, '--validity') / 86_400_000 } : {}),
          ...(values['root-key-out'] ? { rootKeyOut: values['root-key-out'] } : {}),
          dryRun: values['dry-run'] ?? false,
        },
        print,
      );
      return 0;
    case 'finish':
      await rotateFinish(
        store,
        { addresses, force: values.force ?? false, dryRun: values['dry-run'] ?? false, ...(values.wait ? { waitMs: parseDuration(values.wait, '--wait') } : {}) },
        print,
      );
      return 0;
    default:
      throw new UsageError(`unknown subcommand "ca rotate ${sub}"; use status, start or finish`);
  }
}

function help(): number {
  console.log(USAGE);
  return 0;
}

export const caCommand: Command = {
  name: 'ca',
  summary: 'create a root CA, issue a certificate, rotate the root live',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'init':
        return init(rest);
      case 'issue':
        return issue(rest);
      case 'rotate':
        return rotate(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        return help();
      default:
        throw new UsageError(`unknown subcommand "ca ${sub}"`);
    }
  },
};
