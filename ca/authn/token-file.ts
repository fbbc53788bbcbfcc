// Static tokens for a mesh without Kubernetes (tsmesh demo, tests):
//
//   tokens:
//     - token: 3f9c...          # at least 16 characters
//       spiffeId: spiffe://cluster.local/ns/default/sa/web
//       expiresAt: 2027-01-01T00:00:00Z   # optional
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { CaError } from '../errors.js';
import { parseSpiffeId, parseWorkloadSpiffeId } from '../../contract/spiffe.js';
import type { Authenticator, Caller } from './authenticator.js';

export interface StaticToken {
  token: string;
  spiffeId: string;
  expiresAt?: Date;
}

export const MIN_STATIC_TOKEN_LENGTH = 16;

const digest = (token: string): string => createHash('sha256').update(token).digest('hex');

export class TokenFileAuthenticator implements Authenticator {
  readonly kind = 'token-file';
  // Keyed by the token's hash, so a lookup compares no secret byte by byte.
  private readonly byDigest = new Map<string, StaticToken>();

  constructor(
    tokens: readonly StaticToken[],
    private readonly now: () => Date = () => new Date(),
  ) {
    for (const [i, t] of tokens.entries()) {
      if (typeof t.token !== 'string' || t.token.length < MIN_STATIC_TOKEN_LENGTH)
        throw new CaError('internal', `token entry ${i}: the token must be a string of at least ${MIN_STATIC_TOKEN_LENGTH} characters`);
      parseSpiffeId(t.spiffeId);
      this.byDigest.set(digest(t.token), t);
    }
  }

  static async fromFile(path: string, now?: () => Date): Promise<TokenFileAuthenticator> {
    let doc: unknown;
    try {
      doc = parseYaml(await readFile(path, 'utf8'));
    } catch (e) {
      throw new CaError('internal', `cannot read token file ${path}: ${(e as Error).message}`);
    }
    const list = (doc as { tokens?: unknown } | null)?.tokens;
    if (!Array.isArray(list)) throw new CaError('internal', `token file ${path} must hold "tokens:", a list of {token, spiffeId, expiresAt?}`);
    const tokens = list.map((raw: unknown, i): StaticToken => {
      const e = raw as Record<string, unknown>;
      if (typeof e?.token !== 'string' || typeof e.spiffeId !== 'string')
        throw new CaError('internal', `token file ${path}, entry ${i}: needs string fields "token" and "spiffeId"`);
      const out: StaticToken = { token: e.token, spiffeId: e.spiffeId };
      if (e.expiresAt !== undefined) {
        const d = new Date(e.expiresAt as string);
        if (Number.isNaN(d.getTime())) throw new CaError('internal', `token file ${path}, entry ${i}: expiresAt is not a date`);
        out.expiresAt = d;
      }
      return out;
    });
    return new TokenFileAuthenticator(tokens, now);
  }

  authenticate(token: string): Promise<Caller> {
    const entry = this.byDigest.get(digest(token));
    if (!entry) return Promise.reject(new CaError('unauthenticated', 'unknown token'));
    if (entry.expiresAt && entry.expiresAt <= this.now())
      return Promise.reject(new CaError('unauthenticated', `the token expired at ${entry.expiresAt.toISOString()}`));
    const w = parseWorkloadSpiffeId(entry.spiffeId);
    return Promise.resolve(w ? { spiffeId: entry.spiffeId, namespace: w.namespace, serviceAccount: w.serviceAccount } : { spiffeId: entry.spiffeId });
  }
}
