/**
 * What the proxy knows to be revoked (SPEC §4.6), and whether a tunnel or a stream is hit. Pure: the CA's feed
 * client (or an operator) adds entries; the SSH listener asks at login, the relay at connect, and `revoke`
 * sweeps live tunnels and streams with the same predicates.
 *
 * Subjects, as the CA's revocation feed names them:
 *   gateway      gatewayId (with orgId) or the gateway URI
 *   identity     identityId (with orgId) or the identity URI
 *   certificate  a serial in hex, as the CA records it (X.509 serials; SSH serials zero-padded to 16 digits)
 *   proxy/grant  nothing to close here: a proxy never sees grants (they ride in the inner TLS), and a revoked
 *                proxy is refused by gateways and platforms.
 * An entry without orgId matches every org: for revocation, failing closed is the safe side.
 */
import type { GatewayLogin, RouteDecision } from './admission.js';

export type RevocationKind = 'gateway' | 'proxy' | 'identity' | 'grant' | 'certificate';

export interface Revocation {
  kind: RevocationKind;
  subject: string;
  orgId?: string | null;
}

/** What identifies a gateway's tunnel for revocation. */
export type TunnelSubject = Pick<GatewayLogin, 'orgId' | 'gatewayId' | 'uri' | 'serial'>;
/** What identifies a platform stream for revocation. */
export type StreamSubject = Pick<RouteDecision, 'orgId' | 'identityUri' | 'serialHex'>;

const MAX_ENTRIES = 1_000_000;

export class RevocationList {
  readonly #entries = new Map<string, Revocation>();

  get size(): number {
    return this.#entries.size;
  }

  /** Adds an entry; returns false when it was known already (or the list is full). */
  add(entry: Revocation): boolean {
    const k = `${entry.kind}\n${entry.orgId ?? ''}\n${normalize(entry.kind, entry.subject)}`;
    if (this.#entries.has(k) || this.#entries.size >= MAX_ENTRIES) return false;
    this.#entries.set(k, { ...entry, subject: normalize(entry.kind, entry.subject) });
    return true;
  }

  tunnelRevoked(t: TunnelSubject): Revocation | undefined {
    return this.#find((e) => tunnelHit(e, t));
  }

  streamRevoked(s: StreamSubject): Revocation | undefined {
    return this.#find((e) => streamHit(e, s));
  }

  /** An X.509 serial (any org): for the verifier's `isRevoked`, which sees serials only. */
  certificateRevoked(serialHex: string): Revocation | undefined {
    const serial = normalize('certificate', serialHex);
    return this.#find((e) => e.kind === 'certificate' && e.subject === serial);
  }

  #find(hit: (e: Revocation) => boolean): Revocation | undefined {
    // Entries are few (revocations are rare), so a scan is simpler than one index per subject form.
    for (const e of this.#entries.values()) if (hit(e)) return e;
    return undefined;
  }
}

function normalize(kind: RevocationKind, subject: string): string {
  return kind === 'certificate'
    ? subject
        .trim()
        .toLowerCase()
        .replace(/^0x/, '')
        .replace(/^0+(?=.)/, '')
    : subject;
}

const orgMatches = (e: Revocation, orgId: string): boolean => !e.orgId || e.orgId === orgId;

/** Does revocation `e` hit a tunnel of this gateway? */
export function tunnelHit(e: Revocation, t: TunnelSubject): boolean {
  switch (e.kind) {
    case 'gateway':
      return e.subject === t.uri || (e.subject === t.gatewayId && orgMatches(e, t.orgId));
    case 'certificate':
      return e.subject === t.serial.toString(16) && orgMatches(e, t.orgId);
    default:
      return false;
  }
}

/** Does revocation `e` hit a stream opened with this outer cert? */
export function streamHit(e: Revocation, s: StreamSubject): boolean {
  switch (e.kind) {
    case 'identity': {
      if (e.subject === s.identityUri) return true;
      const id = s.identityUri.slice(s.identityUri.lastIndexOf('/') + 1);
      return e.subject === id && orgMatches(e, s.orgId);
    }
    case 'certificate':
      return e.subject === normalize('certificate', s.serialHex) && orgMatches(e, s.orgId);
    default:
      return false;
  }
}
