// A CA and a server certificate for "outside" TLS servers in egress tests,
// made by the openssl command line (a CA of the test's own, nothing of the
// mesh's): `hosts` become the leaf's DNS names.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OutsideTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function outsideTls(hosts: readonly string[], cn = 'outside test CA'): OutsideTls {
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-egress-tls-'));
  const f = (name: string): string => join(dir, name);
  const openssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', `/CN=${cn}`]);
    openssl(['req', ...ec, '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', `/CN=${hosts[0] ?? 'outside'}`]);
    writeFileSync(f('ext.cnf'), `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(',')}\n`);
    openssl(['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('leaf.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
    return { caPem: readFileSync(f('ca.pem'), 'utf8'), certPem: readFileSync(f('leaf.pem'), 'utf8'), keyPem: readFileSync(f('leaf.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
