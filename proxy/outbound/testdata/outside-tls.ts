// A CA and a server certificate for "outside" TLS servers in egress tests,
// made by the openssl command line (a CA of the test's own, nothing of the
// mesh's): `hosts` become the leaf's DNS names.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

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

/**
 * Answers the first HTTP/1.1 request head of a TLS connection itself (the
 * body `answer` gives for its path and Host, then closes), so a test sees
 * that a request arrived as TLS and with which SNI.
 */
export function answerOverTls(socket: TLSSocket, answer: (request: { servername: string | false | null; path: string; host: string | undefined }) => string): void {
  socket.on('error', () => undefined);
  let head = '';
  socket.on('data', (d: Buffer) => {
    head += d.toString('latin1');
    if (!head.includes('\r\n\r\n')) return;
    const body = answer({ servername: socket.servername, path: head.split(' ')[1] ?? '', host: /\r\nhost:\s*([^\r\n]*)/i.exec(head)?.[1] });
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    head = '';
  });
}
