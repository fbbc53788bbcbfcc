// Section CA, and the trust bundles: Secret tsmesh-ca holds roots that are
// valid (a certificate within caExpiryDays of its end fails: expired roots
// are the best-known cause of mesh-wide outages) and a signer whose key
// matches and that chains to a root; the trust-bundle ConfigMap of each
// meshed namespace holds those roots. The webhook's caBundle is compared
// with them too (webhook.ts), through `fingerprints` and `sameSet`.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { splitPemCertificates } from '../../ca/der.js';
import { CA_FILES } from '../../ca/material.js';
import { CA_SECRET_NAME, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY } from '../../contract/names.js';
import { caFilesFromSecret, type CaFiles } from '../ca.js';
import { DAY_MS, errorText, LOGS, NS, type CheckContext } from './context.js';

const ROTATE =
  'rotate the root: make a new one (tsmesh ca init --out new-ca), append the current root-cert.pem to new-ca/root-cert.pem so both are trusted, ' +
  'run tsmesh install --ca-dir new-ca, and drop the old root once every proxy has renewed its certificate';

function subject(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ', ') || '(empty subject)';
}

function days(ms: number): string {
  const d = Math.floor(ms / DAY_MS);
  return d === 1 ? '1 day' : `${d} days`;
}

/** SHA-256 fingerprints of the certificates in a PEM bundle (one that does not parse counts as itself). */
export function fingerprints(pem: string): Set<string> {
  const out = new Set<string>();
  for (const p of splitPemCertificates(pem)) {
    try {
      out.add(new X509Certificate(p).fingerprint256);
    } catch {
      out.add(`unparsable:${p.length}`);
    }
  }
  return out;
}

export const sameSet = (a: Set<string>, b: Set<string>): boolean => a.size === b.size && [...a].every((x) => b.has(x));

function checkValidity(ctx: CheckContext, what: string, c: X509Certificate): boolean {
  const now = ctx.now().getTime();
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  const until = new Date(to).toISOString().slice(0, 10);
  if (now < from) {
    ctx.fail(`${what} ${subject(c)} is not valid before ${new Date(from).toISOString()}`, 'check the clocks of the nodes and of the machine that made the certificate');
    return false;
  }
  if (now >= to) {
    ctx.fail(`${what} ${subject(c)} EXPIRED on ${until}: proxies cannot get or verify certificates`, ROTATE);
    return false;
  }
  if (to - now < ctx.caExpiryMs) {
    ctx.fail(`${what} ${subject(c)} expires in ${days(to - now)} (${until})`, what === 'root' ? ROTATE : 'issue a new intermediate from the root and run tsmesh install --ca-dir with it');
    return false;
  }
  ctx.ok(`${what} ${subject(c)} valid until ${until} (${days(to - now)})`);
  return true;
}

/** Secret tsmesh-ca; learns the mesh's roots (ctx.roots) for the webhook and trust-bundle checks. */
export async function checkCa(ctx: CheckContext): Promise<void> {
  let secret: { data?: Record<string, string> } | undefined;
  try {
    secret = await ctx.get(`/api/v1/namespaces/${NS}/secrets/${CA_SECRET_NAME}`);
  } catch (e) {
    ctx.warn(`cannot read Secret ${CA_SECRET_NAME}: ${errorText(e)}; the CA is not checked`, `run tsmesh check as a user who may read Secret ${NS}/${CA_SECRET_NAME}`);
    return;
  }
  if (!secret) {
    ctx.fail(`Secret ${NS}/${CA_SECRET_NAME} is missing: the control plane cannot start`, 'tsmesh install (it creates a new root), or tsmesh install --ca-dir DIR to bring yours');
    return;
  }
  const files: CaFiles = caFilesFromSecret(secret);
  const rootPem = files[CA_FILES.rootCert] ?? '';
  const roots: X509Certificate[] = [];
  for (const [i, p] of splitPemCertificates(rootPem).entries()) {
    try {
      roots.push(new X509Certificate(p));
    } catch (e) {
      ctx.fail(`root-cert.pem certificate ${i + 1} does not parse: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with a good root-cert.pem');
    }
  }
  if (roots.length === 0) {
    ctx.fail(`Secret ${CA_SECRET_NAME} holds no root certificate (root-cert.pem)`, 'tsmesh install --ca-dir DIR, or delete the Secret and run tsmesh install to make a new root');
    return;
  }
  ctx.roots = new Set(roots.map((r) => r.fingerprint256));
  for (const r of roots) {
    if (!r.ca) ctx.fail(`root ${subject(r)} is not a CA certificate`, 'root-cert.pem must hold CA certificates only');
    else checkValidity(ctx, 'root', r);
  }
  const td = `spiffe://${ctx.trustDomain}`;
  const tdOf = (c: X509Certificate): string | undefined => /URI:(spiffe:\/\/[^,/\s]+)/.exec(c.subjectAltName ?? '')?.[1];

  if (files[CA_FILES.caCert]) {
    let signer: X509Certificate;
    try {
      signer = new X509Certificate(files[CA_FILES.caCert]!);
    } catch (e) {
      ctx.fail(`ca-cert.pem does not parse: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with a good ca-cert.pem');
      return;
    }
    checkValidity(ctx, 'intermediate', signer);
    const chain = [signer, ...splitPemCertificates(files[CA_FILES.certChain] ?? '').map((p) => new X509Certificate(p))];
    for (const c of chain.slice(1)) checkValidity(ctx, 'intermediate', c);
    const top = chain[chain.length - 1]!;
    const linked = chain.every((c, i) => i === 0 || (chain[i - 1]!.checkIssued(c) && chain[i - 1]!.verify(c.publicKey)));
    const anchored = roots.some((r) => (top.checkIssued(r) && top.verify(r.publicKey)) || r.fingerprint256 === top.fingerprint256);
    if (!linked || !anchored) ctx.fail('the intermediate (ca-cert.pem, cert-chain.pem) does not chain to a root of root-cert.pem: proxies will not trust the certificates it signs', 'tsmesh install --ca-dir DIR with a consistent CA folder');
    else ctx.ok(`workload certificates are signed by the intermediate ${subject(signer)}, which chains to the root`);
    try {
      if (!signer.checkPrivateKey(createPrivateKey(files[CA_FILES.caKey] ?? ''))) ctx.fail('ca-key.pem is not the key of ca-cert.pem', 'tsmesh install --ca-dir DIR with the matching key');
    } catch (e) {
      ctx.fail(`ca-key.pem: ${(e as Error).message}`, 'tsmesh install --ca-dir DIR with the intermediate\'s key');
    }
    if (tdOf(signer) && tdOf(signer) !== td) ctx.warn(`the intermediate is for ${tdOf(signer)}, the control plane for ${td}`, 'use a CA made for the mesh\'s trust domain (tsmesh ca init --trust-domain)');
  } else {
    let key;
    try {
      key = createPrivateKey(files[CA_FILES.rootKey] ?? '');
    } catch (e) {
      ctx.fail(`root-key.pem: ${(e as Error).message}`, 'the Secret needs root-key.pem, or ca-cert.pem with ca-key.pem (tsmesh install --ca-dir DIR)');
      return;
    }
    const signer = roots.find((r) => r.checkPrivateKey(key));
    if (!signer) ctx.fail('root-key.pem is the key of none of the roots in root-cert.pem: the control plane cannot start', 'tsmesh install --ca-dir DIR with the matching key');
    else {
      ctx.ok(`workload certificates are signed by the root ${subject(signer)}`);
      if (tdOf(signer) && tdOf(signer) !== td) ctx.warn(`the root is for ${tdOf(signer)}, the control plane for ${td}`, 'use a CA made for the mesh\'s trust domain (tsmesh ca init --trust-domain)');
    }
  }
}

/** A meshed namespace's trust-bundle ConfigMap (written by the control plane) exists and holds the mesh's roots. */
export async function checkTrustBundle(ctx: CheckContext, ns: string): Promise<void> {
  const cm = await ctx.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${TRUST_BUNDLE_CONFIGMAP}`);
  if (!cm?.data?.[TRUST_BUNDLE_KEY]) ctx.fail(`namespace ${ns} has no ConfigMap ${TRUST_BUNDLE_CONFIGMAP}: its meshed pods cannot start`, `the control plane writes it; ${LOGS}`);
  else if (ctx.roots && !sameSet(fingerprints(cm.data[TRUST_BUNDLE_KEY]), ctx.roots))
    ctx.fail(`namespace ${ns}: ConfigMap ${TRUST_BUNDLE_CONFIGMAP} differs from the mesh roots`, `the control plane updates it; ${LOGS}`);
}
