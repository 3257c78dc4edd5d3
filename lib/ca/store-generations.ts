/**
 * The certificate generations of gateways and proxies (store-schema.ts migration 2): which TLS serial is current,
 * and the previous generation waiting to be retired. Reads and writes only; supersede.ts decides.
 */
import { nul, orgKey, type Raw } from './store-rows.js';
import { TableStore } from './store-table.js';

/** A gateway (orgId set) or proxy (orgId null for an instance proxy). */
export interface ComponentRef {
  kind: 'gateway' | 'proxy';
  orgId: string | null;
  id: string;
}

/** One bundle's certificates: its TLS leaf serial, every serial it holds (TLS and SSH), the TLS key's SPKI hash. */
export interface Generation {
  serial: string;
  serials: string[];
  spki: string;
}

export interface Generations {
  current: Generation | null;
  previous: (Omit<Generation, 'spki'> & { retireAt: number }) | null;
}

const tableOf = (ref: ComponentRef) =>
  ref.kind === 'gateway' ? { table: 'gateways', id: 'gateway_id' } : { table: 'proxies', id: 'proxy_id' };

function toGenerations(r: Raw): Generations {
  const current = nul<string>(r['current_serial']);
  const previous = nul<string>(r['previous_serial']);
  const retireAt = nul<number>(r['previous_retire_at']);
  return {
    current:
      current === null
        ? null
        : {
            serial: current,
            serials: JSON.parse((r['current_serials_json'] as string | null) ?? '[]') as string[],
            spki: (r['current_spki'] as string | null) ?? '',
          },
    previous:
      previous === null || retireAt === null
        ? null
        : {
            serial: previous,
            serials: JSON.parse((r['previous_serials_json'] as string | null) ?? '[]') as string[],
            retireAt,
          },
  };
}

export class GenerationStore extends TableStore {
  of(ref: ComponentRef): Generations | undefined {
    const { table, id } = tableOf(ref);
    const r = this.q(`SELECT * FROM ${table} WHERE org_id = ? AND ${id} = ?`).get(orgKey(ref.orgId), ref.id) as
      | Raw
      | undefined;
    return r && toGenerations(r);
  }

  /** Makes `gen` current; with `previous`, the generation it replaces waits for retirement until `retireAt`. */
  setCurrent(ref: ComponentRef, gen: Generation, previous?: { serial: string; serials: string[]; retireAt: number }) {
    const { table, id } = tableOf(ref);
    const cur = [gen.serial, JSON.stringify(gen.serials), gen.spki];
    if (previous) {
      this.q(
        `UPDATE ${table} SET current_serial = ?, current_serials_json = ?, current_spki = ?, previous_serial = ?,
           previous_serials_json = ?, previous_retire_at = ? WHERE org_id = ? AND ${id} = ?`,
      ).run(...cur, previous.serial, JSON.stringify(previous.serials), previous.retireAt, orgKey(ref.orgId), ref.id);
    } else {
      this.q(
        `UPDATE ${table} SET current_serial = ?, current_serials_json = ?, current_spki = ?
         WHERE org_id = ? AND ${id} = ?`,
      ).run(...cur, orgKey(ref.orgId), ref.id);
    }
  }

  clearPrevious(ref: ComponentRef): void {
    const { table, id } = tableOf(ref);
    this.q(
      `UPDATE ${table} SET previous_serial = NULL, previous_serials_json = NULL, previous_retire_at = NULL
       WHERE org_id = ? AND ${id} = ?`,
    ).run(orgKey(ref.orgId), ref.id);
  }

  /** Components whose previous generation is due for retirement at `now`. */
  due(now: number): ComponentRef[] {
    const gateways = this.q(
      'SELECT org_id, gateway_id FROM gateways WHERE previous_retire_at IS NOT NULL AND previous_retire_at <= ?',
    ).all(now) as Raw[];
    const proxies = this.q(
      'SELECT org_id, proxy_id FROM proxies WHERE previous_retire_at IS NOT NULL AND previous_retire_at <= ?',
    ).all(now) as Raw[];
    return [
      ...gateways.map((r) => ({
        kind: 'gateway' as const,
        orgId: r['org_id'] as string,
        id: r['gateway_id'] as string,
      })),
      ...proxies.map((r) => ({
        kind: 'proxy' as const,
        orgId: (r['org_id'] as string) === '' ? null : (r['org_id'] as string),
        id: r['proxy_id'] as string,
      })),
    ];
  }

  /** The serials signed for `subjectUri` at `createdAt` (one bundle), TLS leaf first: for untracked generations. */
  bundleOf(subjectUri: string, createdAt: number): string[] {
    return (
      this.q(
        `SELECT serial FROM certificates WHERE subject_uri = ? AND created_at = ? AND grant_id IS NULL
         ORDER BY kind LIKE '%-tls' DESC, rowid`,
      ).all(subjectUri, createdAt) as Raw[]
    ).map((r) => r['serial'] as string);
  }

  /** The revocation row of a certificate serial, if any (who revoked it tells a retirement from a revocation). */
  certificateRevocation(orgId: string | null, serial: string): { revokedBy: string; at: number } | undefined {
    const r = this.q(
      `SELECT revoked_by, at FROM revocations WHERE kind = 'certificate' AND org_id = ? AND subject = ?`,
    ).get(orgKey(orgId), serial) as Raw | undefined;
    return r && { revokedBy: r['revoked_by'] as string, at: r['at'] as number };
  }
}
