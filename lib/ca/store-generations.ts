/**
 * The certificate generations of gateways and proxies (store-schema.ts migration 2) and of gateway replicas
 * (migration 6, table gateway_replicas): which TLS serial is current, and the previous generation waiting to be
 * retired. Reads and writes only; supersede.ts decides.
 */
import { nul, orgKey, type Raw } from './store-rows.js';
import { TableStore } from './store-table.js';

/**
 * A gateway (orgId set) or proxy (orgId null for an instance proxy). `replica`: one replica of a gateway
 * (migration 6), with generations of its own; absent or null: the gateway's own enrollment (no --replica).
 */
export interface ComponentRef {
  kind: 'gateway' | 'proxy';
  orgId: string | null;
  id: string;
  replica?: string | null;
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

/** The row holding a component's generations: its table and the WHERE clause (with its parameters) naming it. */
function rowOf(ref: ComponentRef): { table: string; where: string; params: string[] } {
  if (ref.kind === 'proxy')
    return { table: 'proxies', where: 'org_id = ? AND proxy_id = ?', params: [orgKey(ref.orgId), ref.id] };
  if (ref.replica == null) {
    return { table: 'gateways', where: 'org_id = ? AND gateway_id = ?', params: [orgKey(ref.orgId), ref.id] };
  }
  return {
    table: 'gateway_replicas',
    where: 'org_id = ? AND gateway_id = ? AND replica = ?',
    params: [orgKey(ref.orgId), ref.id, ref.replica],
  };
}

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

/** One replica of a gateway as stored: its name, enrollment times and generations. */
export interface ReplicaRow extends Generations {
  replica: string;
  enrolledAt: number;
  renewedAt: number | null;
}

export class GenerationStore extends TableStore {
  of(ref: ComponentRef): Generations | undefined {
    const { table, where, params } = rowOf(ref);
    const r = this.q(`SELECT * FROM ${table} WHERE ${where}`).get(...params) as Raw | undefined;
    return r && toGenerations(r);
  }

  /** Makes `gen` current; with `previous`, the generation it replaces waits for retirement until `retireAt`. */
  setCurrent(ref: ComponentRef, gen: Generation, previous?: { serial: string; serials: string[]; retireAt: number }) {
    const { table, where, params } = rowOf(ref);
    const cur = [gen.serial, JSON.stringify(gen.serials), gen.spki];
    if (previous) {
      this.q(
        `UPDATE ${table} SET current_serial = ?, current_serials_json = ?, current_spki = ?, previous_serial = ?,
           previous_serials_json = ?, previous_retire_at = ? WHERE ${where}`,
      ).run(...cur, previous.serial, JSON.stringify(previous.serials), previous.retireAt, ...params);
    } else {
      this.q(`UPDATE ${table} SET current_serial = ?, current_serials_json = ?, current_spki = ? WHERE ${where}`).run(
        ...cur,
        ...params,
      );
    }
  }

  clearPrevious(ref: ComponentRef): void {
    const { table, where, params } = rowOf(ref);
    this.q(
      `UPDATE ${table} SET previous_serial = NULL, previous_serials_json = NULL, previous_retire_at = NULL
       WHERE ${where}`,
    ).run(...params);
  }

  // ---- gateway replicas (migration 6) ---------------------------------------------------------------------------

  /** Records a replica's enrollment (a new row, or its enrolled_at renewed when it enrolls again). */
  enrollReplica(orgId: string, gatewayId: string, replica: string, now: number): void {
    this.q(
      `INSERT INTO gateway_replicas (org_id, gateway_id, replica, enrolled_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (org_id, gateway_id, replica) DO UPDATE SET enrolled_at = excluded.enrolled_at, renewed_at = NULL`,
    ).run(orgId, gatewayId, replica, now);
  }
  renewedReplica(orgId: string, gatewayId: string, replica: string, now: number): void {
    this.q('UPDATE gateway_replicas SET renewed_at = ? WHERE org_id = ? AND gateway_id = ? AND replica = ?').run(
      now,
      orgId,
      gatewayId,
      replica,
    );
  }
  /** A gateway's replicas, by name, with their generations. */
  replicas(orgId: string, gatewayId: string): ReplicaRow[] {
    return (
      this.q('SELECT * FROM gateway_replicas WHERE org_id = ? AND gateway_id = ? ORDER BY replica').all(
        orgId,
        gatewayId,
      ) as Raw[]
    ).map((r) => ({
      replica: r['replica'] as string,
      enrolledAt: r['enrolled_at'] as number,
      renewedAt: nul<number>(r['renewed_at']),
      ...toGenerations(r),
    }));
  }
  /** Forgets every replica of a gateway (an enrollment without --replica replaced them; their certs retired). */
  dropReplicas(orgId: string, gatewayId: string): void {
    this.q('DELETE FROM gateway_replicas WHERE org_id = ? AND gateway_id = ?').run(orgId, gatewayId);
  }

  /** Components whose previous generation is due for retirement at `now`. */
  due(now: number): ComponentRef[] {
    const gateways = this.q(
      'SELECT org_id, gateway_id FROM gateways WHERE previous_retire_at IS NOT NULL AND previous_retire_at <= ?',
    ).all(now) as Raw[];
    const proxies = this.q(
      'SELECT org_id, proxy_id FROM proxies WHERE previous_retire_at IS NOT NULL AND previous_retire_at <= ?',
    ).all(now) as Raw[];
    const replicas = this.q(
      `SELECT org_id, gateway_id, replica FROM gateway_replicas
       WHERE previous_retire_at IS NOT NULL AND previous_retire_at <= ?`,
    ).all(now) as Raw[];
    return [
      ...replicas.map((r) => ({
        kind: 'gateway' as const,
        orgId: r['org_id'] as string,
        id: r['gateway_id'] as string,
        replica: r['replica'] as string,
      })),
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
