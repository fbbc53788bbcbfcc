// The proxy's side of POST /v1/certificates (ca/server.ts): a CSR and the
// projected ServiceAccount token, over TLS verified against the mesh roots.
// One connection per request: requests come once per half-life, and a fresh
// connection picks up a changed trust bundle without managing a pool.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { CertificateResponse } from '../../ca/server.js';
import { parseCertificateResponse } from './credentials.js';
import { IdentityError } from './errors.js';

/** The CA call, as the identity manager needs it. */
export type RequestCertificate = (csrPem: string, signal?: AbortSignal) => Promise<CertificateResponse>;

export interface CaClientOptions {
  /** host:port of the control plane's TLS port (TSMESH_CONTROL_PLANE_ADDRESS). */
  address: string;
  /** The projected token (TSMESH_TOKEN_PATH); read again for every request, as kubelet rotates it. */
  tokenPath: string;
  /** PEM roots that verify the CA's serving certificate; asked for every request. */
  trustAnchors: () => Promise<string>;
  /** The name the CA's certificate must carry; by default the address's host (an IP address is checked against the IP SANs). */
  servername?: string;
  /**
   * The certificate in force, presented as a TLS client certificate when the
   * CA asks for one (renewals over mTLS); undefined before the first.
   */
  clientCertificate?: () => { key: string; cert: string } | undefined;
  /** For the whole request, connection included. */
  timeoutMs?: number;
}

export const CERTIFICATES_PATH = '/v1/certificates';
export const DEFAULT_CA_TIMEOUT_MS = 10_000;
/** A certificate response is a few KiB; anything far larger is not one. */
const MAX_RESPONSE_BYTES = 256 * 1024;

export interface ControlPlaneAddress {
  host: string;
  port: number;
}

/** "host:port" or "[v6]:port". */
export function parseControlPlaneAddress(address: string): ControlPlaneAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:/[\]\s]+)):(\d{1,5})$/.exec(address.trim());
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535)
    throw new IdentityError('bad-address', `control-plane address ${JSON.stringify(address)} is not host:port; write e.g. tsmesh-control-plane.tsmesh-system.svc:15012`);
  return { host: m[1] ?? m[2]!, port };
}

export function createCaClient(opts: CaClientOptions): RequestCertificate {
  const { host, port } = parseControlPlaneAddress(opts.address);
  const servername = opts.servername ?? (isIP(host) ? undefined : host);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CA_TIMEOUT_MS;
  const where = `${opts.address}${CERTIFICATES_PATH}`;

  return async (csrPem, signal) => {
    const [token, ca] = await Promise.all([readToken(opts.tokenPath), opts.trustAnchors()]);
    const body = JSON.stringify({ csr: csrPem });
    const clientCert = opts.clientCertificate?.();
    const { status, headers, text } = await new Promise<{ status: number; headers: Record<string, unknown>; text: string }>((resolve, reject) => {
      const req = request({
        host,
        port,
        method: 'POST',
        path: CERTIFICATES_PATH,
        ca,
        ...(servername === undefined ? {} : { servername }),
        ...(clientCert === undefined ? {} : { key: clientCert.key, cert: clientCert.cert }),
        minVersion: 'TLSv1.2',
        agent: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), accept: 'application/json' },
        ...(signal === undefined ? {} : { signal }),
      });
      const timer = setTimeout(
        () => req.destroy(new IdentityError('ca-timeout', `the CA at ${where} did not answer within ${timeoutMs}ms; is the control plane overloaded?`)),
        timeoutMs,
      );
      req.on('close', () => clearTimeout(timer));
      req.on('error', (e) => reject(e instanceof IdentityError ? e : unreachable(where, servername ?? host, e)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) req.destroy(new IdentityError('bad-response', `the CA at ${where} sent more than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.end(body);
    });
    if (status !== 200) throw refusal(where, status, headers, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new IdentityError('bad-response', `the CA at ${where} answered 200 with a body that is not JSON: ${text.slice(0, 120)}`);
    }
    return parseCertificateResponse(json);
  };
}

async function readToken(path: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw new IdentityError(
      'token-unreadable',
      `cannot read the ServiceAccount token at ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the pod needs the projected token volume with audience tsmesh-ca`,
    );
  }
  if (token === '') throw new IdentityError('token-unreadable', `the ServiceAccount token file ${path} is empty`);
  return token;
}

function unreachable(where: string, name: string, e: Error & { code?: string }): IdentityError {
  const tlsHint = /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO|SIGNATURE/.test(e.code ?? '')
    ? `; the CA's certificate did not verify for ${name} against the trust bundle`
    : '';
  return new IdentityError('ca-unreachable', `cannot reach the CA at ${where}: ${e.code ? `${e.code} ` : ''}${e.message}${tlsHint}`, {}, { cause: e });
}

function refusal(where: string, status: number, headers: Record<string, unknown>, text: string): IdentityError {
  let code: string | undefined;
  let message = text.slice(0, 200).trim();
  try {
    const err = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof err?.code === 'string') code = err.code;
    if (typeof err?.message === 'string') message = err.message;
  } catch {
    // Not the CA's JSON (a proxy or load balancer in between): keep the text.
  }
  const retryAfterMs = parseRetryAfter(headers['retry-after']);
  return new IdentityError('ca-refused', `the CA at ${where} refused the certificate request: ${status}${code ? ` ${code}` : ''}: ${message || '(no body)'}`, {
    status,
    ...(code === undefined ? {} : { caCode: code }),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: unknown, now: number = Date.now()): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
