/**
 * What the gateway knows to be revoked (SPEC §4.6), fed by `revoke(kind, subject)` (the CA's signed
 * revocation feed, or an operator). Checked when a stream is admitted; live streams are ended by the
 * StreamRegistry at the moment of revocation.
 */

import type { AccessGrant } from '../pki/grant.js';
import { parseIdentity } from '../pki/identity.js';
import type { RevocationKind } from '../protocol/api.js';

export type { RevocationKind };

export interface Revocation {
  kind: RevocationKind;
  subject: string;
  /** Org the subject belongs to; null/undefined for instance-level subjects. */
  orgId?: string | null;
}

/** A revocation list held in memory; subjects are compared exactly (serials as lowercase hex). */
export class RevocationSet {
  readonly #byKind = new Map<RevocationKind, Set<string>>();

  constructor(entries: Iterable<Revocation> = []) {
    for (const e of entries) this.add(e);
  }

  /** Returns false when it was already known. */
  add(r: Revocation): boolean {
    let set = this.#byKind.get(r.kind);
    if (!set) {
      set = new Set();
      this.#byKind.set(r.kind, set);
    }
    const key = keyOf(r);
    if (set.has(key)) return false;
    set.add(key);
    return true;
  }

  has(kind: RevocationKind, subject: string, orgId?: string | null): boolean {
    const set = this.#byKind.get(kind);
    if (!set) return false;
    return set.has(keyOf({ kind, subject, orgId })) || set.has(keyOf({ kind, subject }));
  }

  get size(): number {
    let n = 0;
    for (const s of this.#byKind.values()) n += s.size;
    return n;
  }
}

/**
 * Certificates are keyed by serial alone: the feed names the org a serial was issued in, but admission looks a
 * serial up without one (the verifier sees serials only), and serials are random per issuance, so dropping the
 * org can only make a lookup fail closed.
 */
function keyOf(r: Revocation): string {
  if (r.kind === 'certificate')
    return r.subject
      .toLowerCase()
      .replace(/^0x/, '')
      .replace(/^0+(?=.)/, '');
  return r.orgId ? `${r.orgId}/${r.subject}` : r.subject;
}

/** Does revocation `r` end a stream carried under `grant` with inner client cert `serialHex`? */
export function revocationCovers(
  r: Revocation,
  stream: { grant: AccessGrant; serialHex: string; gatewayId: string },
): boolean {
  const sameOrg = !r.orgId || r.orgId === stream.grant.orgId;
  switch (r.kind) {
    case 'grant':
      return sameOrg && r.subject === stream.grant.grantId;
    case 'identity': {
      if (r.subject === stream.grant.actor) return true;
      const actor = parseIdentity(stream.grant.actor);
      return sameOrg && actor.ok && actor.value.kind === 'identity' && actor.value.id === r.subject;
    }
    case 'gateway':
      return sameOrg && r.subject === stream.gatewayId;
    case 'certificate':
      return (
        keyOf({ kind: 'certificate', subject: r.subject }) === keyOf({ kind: 'certificate', subject: stream.serialHex })
      );
    case 'proxy':
      return false; // a proxy revocation ends tunnels (the pool), not end-to-end streams
    default:
      return false;
  }
}
