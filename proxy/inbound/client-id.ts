// The caller's identity for the app: on every inbound request the proxy
// removes whatever the caller sent in x-tsmesh-client-id and
// x-forwarded-client-cert, then, for a caller whose certificate it verified,
// sets x-tsmesh-client-id to its SPIFFE ID (as Linkerd's l5d-client-id) and
// x-forwarded-client-cert to `By=<this workload>;Hash=<SHA-256 of the
// caller's certificate, hex>;URI=<its SPIFFE ID>` (Envoy's format, which
// Envoy-aware apps and libraries read). So the app may trust them: a forged
// value never reaches it, and a plaintext caller (PERMISSIVE) gets neither.
import { CLIENT_CERT_HEADER, CLIENT_ID_HEADER } from '../../contract/vocabulary.js';
import type { Layer } from '../http/types.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { createHash } = process.getBuiltinModule('node:crypto');

export interface VerifiedCaller {
  spiffeId: string;
  /** SHA-256 of its certificate's DER, hex. */
  certHash: string;
}

/** A verified caller from its SPIFFE ID and certificate (DER). */
export function verifiedCaller(spiffeId: string, certDer: Buffer): VerifiedCaller {
  return { spiffeId, certHash: createHash('sha256').update(certDer).digest('hex') };
}

/** Per connection: `caller` undefined for a plaintext caller; `local` is this workload's SPIFFE ID. */
export function clientIdentityLayer(caller: VerifiedCaller | undefined, local: string): Layer {
  const id = caller?.spiffeId;
  const cert = caller ? `By=${local};Hash=${caller.certHash};URI=${caller.spiffeId}` : undefined;
  return (next) => (req) => {
    // Assigned, never deleted: the forwarders skip undefined fields, and header objects stay fast.
    const h = req.headers;
    if (id !== undefined || h[CLIENT_ID_HEADER] !== undefined) h[CLIENT_ID_HEADER] = id;
    if (cert !== undefined || h[CLIENT_CERT_HEADER] !== undefined) h[CLIENT_CERT_HEADER] = cert;
    return next(req);
  };
}
