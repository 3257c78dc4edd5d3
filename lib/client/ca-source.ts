/**
 * The real GrantSource: the CA API (lib/protocol/ca-client, API certificate pinned by fingerprint), logged in
 * as a machine identity. The access token is reused until shortly before it expires, and fetched again once
 * if the CA says it expired or was revoked.
 */

import { GatewayError } from '../errors/codes.js';
import type { CaClient } from '../protocol/ca-client.js';
import type { GrantRequest, GrantResponse, GrantSource } from './grant.js';

const TOKEN_MARGIN_MS = 30_000;
const RELOGIN_CODES = new Set(['E_TOKEN_EXPIRED', 'E_TOKEN_REVOKED', 'E_AUTH_REQUIRED']);

export interface CaGrantSourceOptions {
  ca: CaClient;
  clientId: string;
  clientSecret: string;
  nowMs?: () => number;
}

export class CaGrantSource implements GrantSource {
  readonly #o: CaGrantSourceOptions;
  #session: { client: CaClient; expiresAtMs: number } | undefined;

  constructor(o: CaGrantSourceOptions) {
    this.#o = o;
  }

  async requestGrant(req: GrantRequest): Promise<GrantResponse> {
    try {
      return await (await this.#client()).issueGrant(req);
    } catch (err) {
      if (!(err instanceof GatewayError) || !RELOGIN_CODES.has(err.code)) throw err;
      this.#session = undefined;
      return (await this.#client()).issueGrant(req);
    }
  }

  async #client(): Promise<CaClient> {
    const now = (this.#o.nowMs ?? Date.now)();
    if (this.#session && this.#session.expiresAtMs - now > TOKEN_MARGIN_MS) return this.#session.client;
    const { client, session } = await this.#o.ca.loginAs({
      clientId: this.#o.clientId,
      clientSecret: this.#o.clientSecret,
    });
    const expiresAtMs = Date.parse(session.expiresAt);
    this.#session = { client, expiresAtMs: Number.isFinite(expiresAtMs) ? expiresAtMs : now + 60_000 };
    return client;
  }
}
