/**
 * What a refused platform is told (lib/protocol/relay.ts, step 4). The audit record keeps the full reason; the
 * platform gets the code and a message that names only what the grant holder asked for: the target of its
 * grant, its own grant and identity, and the config key an operator would change. Never an address a name
 * resolved to, nor where a named target points. The client names the gateway itself (it dialled it), so the
 * messages do not repeat it. Pure: refusal in, status (or silence) out.
 *
 * Silence (undefined) when the peer's certificate is not proven to come from this org's gateway client CA with a
 * grant (wrong CA, bad signature, malformed, no grant): such a peer is told nothing, the session just closes.
 */
import { isIP } from 'node:net';
import type { ErrorCode } from '../errors/codes.js';
import type { GrantTarget } from '../pki/grant.js';
import type { RelayStatus } from '../protocol/relay.js';

export interface DisclosureContext {
  /** The target of the grant, once the grant has been read. */
  target?: GrantTarget;
  /** A short cause for E_TARGET_UNREACHABLE: an errno code (ECONNREFUSED), 'timeout' or 'name resolution'. */
  cause?: string;
}

/** Codes whose reason is built only from the grant, the requested mode and this gateway's id. */
const REASON_IS_THEIRS = new Set<ErrorCode>([
  'E_GRANT_EXPIRED',
  'E_GRANT_TARGET',
  'E_GRANT_GATEWAY',
  'E_GRANT_ORG',
  'E_SUBJECT_REVOKED',
]);

const ALLOWLIST_KEYS = ['allow_ports', 'allow_hosts', 'allow_cidrs', 'targets'] as const;

/** The status line for a refusal, or undefined for a silent close. */
export function refusalStatus(code: ErrorCode, reason: string, ctx: DisclosureContext): RelayStatus | undefined {
  const told = (c: ErrorCode, message: string): RelayStatus => ({ ok: false, code: c, message });
  const target = ctx.target ? showTarget(ctx.target) : 'the target';
  if (REASON_IS_THEIRS.has(code)) return told(code, reason);
  switch (code) {
    // The inner client certificate IS the grant: past its notAfter (beyond the skew) the grant has expired.
    case 'E_CERT_EXPIRED':
      return told('E_GRANT_EXPIRED', 'the grant certificate has expired; request a new grant');
    case 'E_CERT_NOT_YET_VALID':
      return told(code, 'the grant certificate is not valid yet at the gateway (check the clocks)');
    case 'E_CERT_REVOKED':
      return told(code, 'this grant or its certificate has been revoked');
    case 'E_LIMIT':
      return told(code, 'the gateway carries its maximum number of streams; try again later');
    case 'E_TARGET_NOT_ALLOWED':
      return told(code, notAllowed(reason, target, ctx));
    case 'E_TARGET_UNREACHABLE': {
      const cause = ctx.cause && /^(E[A-Z]+|timeout|name resolution)$/.test(ctx.cause) ? ` (${ctx.cause})` : '';
      return told(code, `the gateway could not reach ${target}${cause}`);
    }
    default:
      return undefined;
  }
}

/** An allowlist refusal names the key to change (allowlist.ts); before the grant is read, the mode is missing. */
function notAllowed(reason: string, target: string, ctx: DisclosureContext): string {
  if (!ctx.target) return 'no mode selected: offer one of tcp, http, ping, health by ALPN';
  const key = ALLOWLIST_KEYS.find((k) => new RegExp(`\\b${k}\\b`).test(reason));
  switch (key) {
    case 'targets':
      return `${target} is not defined on the gateway (set targets there)`;
    case 'allow_cidrs':
      return `the address of ${target} is not in the gateway's allowlist (set allow_cidrs there)`;
    case undefined:
      return `${target} is not in the gateway's allowlist`;
    default:
      return `${target} is not in the gateway's allowlist (set ${key} there)`;
  }
}

/** `host:port` as the grant holder asked (IPv6 bracketed), or `target "name"` for a named target. */
export function showTarget(t: GrantTarget): string {
  if ('name' in t) return `target "${t.name}"`;
  return isIP(t.host) === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
