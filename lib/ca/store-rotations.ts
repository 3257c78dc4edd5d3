/**
 * The rotation state of each CA (store-schema.ts migration 4), as rotation.ts reads and moves it. A CA that was
 * never rotated has no row: its authorities row id is its base id ("org:<org>:<purpose>"), phase standby.
 */
import type { SqlConnection } from '../store/sql.js';
import { nul, orgKey, type Raw } from './store-rows.js';

export const ROTATION_PHASES = ['standby', 'init', 'update_clients', 'update_servers', 'rollback'] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];

export interface RotationState {
  /** The CA's base id, authorityId(orgId, purpose). */
  authorityId: string;
  orgId: string | null;
  purpose: string;
  /** The authorities row that is trusted, and signs outside a rotation. */
  currentId: string;
  /** The new CA while a rotation runs (phases init, update_clients, update_servers, rollback). */
  nextId: string | null;
  phase: RotationPhase;
  /** Grows at every phase change: what components acknowledge. */
  epoch: number;
  /** How many CAs this authority has had (names the next one's row). */
  generation: number;
  phaseAt: number;
  startedAt: number | null;
  /** Automatic mode: each phase lasts at least this long, then moves on by itself when it may. */
  graceMs: number | null;
  /** The CA a completed rotation replaced; its key is destroyed at destroyAt. */
  retiredId: string | null;
  destroyAt: number | null;
}

/** The state of a CA never rotated. */
export function initialRotation(authorityId: string, orgId: string | null, purpose: string): RotationState {
  return {
    authorityId,
    orgId,
    purpose,
    currentId: authorityId,
    nextId: null,
    phase: 'standby',
    epoch: 0,
    generation: 1,
    phaseAt: 0,
    startedAt: null,
    graceMs: null,
    retiredId: null,
    destroyAt: null,
  };
}

export class RotationStore {
  readonly #db: SqlConnection;

  constructor(db: SqlConnection) {
    this.#db = db;
  }

  /**
   * Rows read in the current transaction (a grant asks for the same few CAs' rows a dozen times; they change only
   * here, at a rotation, and under the writers' lock no other writer moves them). Never used outside a transaction.
   */
  #read: { epoch: number; rows: Map<string, RotationState | undefined> } | undefined;

  get(authorityId: string): RotationState | undefined {
    const epoch = this.#db.readEpoch();
    if (epoch !== undefined && this.#read?.epoch === epoch && this.#read.rows.has(authorityId)) {
      return this.#read.rows.get(authorityId);
    }
    const r = this.#db.prepare('SELECT * FROM rotations WHERE authority_id = ?').get(authorityId) as Raw | undefined;
    const row = r && Object.freeze(toRotation(r));
    if (epoch !== undefined) {
      if (this.#read?.epoch !== epoch) this.#read = { epoch, rows: new Map() };
      this.#read.rows.set(authorityId, row);
    }
    return row;
  }

  /** Every rotation row (of one org, of the instance with null, or all with undefined). */
  list(orgId?: string | null): RotationState[] {
    const rows =
      orgId === undefined
        ? this.#db.prepare('SELECT * FROM rotations ORDER BY authority_id').all()
        : this.#db.prepare('SELECT * FROM rotations WHERE org_id = ? ORDER BY authority_id').all(orgKey(orgId));
    return (rows as Raw[]).map(toRotation);
  }

  put(s: RotationState): void {
    this.#read = undefined;
    this.#db
      .prepare(
        `INSERT INTO rotations (authority_id, org_id, purpose, current_id, next_id, phase, epoch, generation, phase_at,
           started_at, grace_ms, retired_id, destroy_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (authority_id) DO UPDATE SET current_id = excluded.current_id, next_id = excluded.next_id,
           phase = excluded.phase, epoch = excluded.epoch, generation = excluded.generation,
           phase_at = excluded.phase_at, started_at = excluded.started_at, grace_ms = excluded.grace_ms,
           retired_id = excluded.retired_id, destroy_at = excluded.destroy_at`,
      )
      .run(
        s.authorityId,
        orgKey(s.orgId),
        s.purpose,
        s.currentId,
        s.nextId,
        s.phase,
        s.epoch,
        s.generation,
        s.phaseAt,
        s.startedAt,
        s.graceMs,
        s.retiredId,
        s.destroyAt,
      );
  }

  /** Epochs of the given base ids (0 for a CA never rotated). */
  epochs(authorityIds: readonly string[]): number[] {
    return authorityIds.map((id) => this.get(id)?.epoch ?? 0);
  }

  /** Drops the rows of a deleted org. */
  forgetOrg(orgId: string): void {
    this.#read = undefined;
    this.#db.prepare('DELETE FROM rotations WHERE org_id = ?').run(orgKey(orgId));
  }

  /**
   * Unexpired grant certificates signed by `rowId` and not revoked: how many, and when the last one expires.
   * Component certificates are left out: live components acknowledge each phase by renewing (their predecessors
   * are retired), and one that was offline is told to re-enroll.
   */
  grantCertificatesSignedBy(rowId: string, nowMs: number): { count: number; lastNotAfter: number | null } {
    const r = this.#db
      .prepare(
        `SELECT count(*) AS n, max(c.not_after) AS last FROM certificates c
          WHERE c.authority_id = ? AND c.grant_id IS NOT NULL AND c.not_after > ?
            AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.kind = 'certificate' AND r.subject = c.serial)
            AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.kind = 'grant' AND r.subject = c.grant_id)`,
      )
      .get(rowId, nowMs) as Raw;
    return { count: r['n'] as number, lastNotAfter: nul<number>(r['last']) };
  }

  /** Unexpired grants of one org (every org with undefined) issued before `beforeMs`. */
  grantsIssuedBefore(orgId: string | undefined, beforeMs: number, nowMs: number) {
    const r = (
      orgId === undefined
        ? this.#db
            .prepare(
              'SELECT count(*) AS n, max(expires_at) AS last FROM grants WHERE created_at <= ? AND expires_at > ?',
            )
            .get(beforeMs, nowMs)
        : this.#db
            .prepare(
              `SELECT count(*) AS n, max(expires_at) AS last FROM grants
                WHERE org_id = ? AND created_at <= ? AND expires_at > ?`,
            )
            .get(orgId, beforeMs, nowMs)
    ) as Raw;
    return { count: r['n'] as number, lastNotAfter: nul<number>(r['last']) };
  }
}

function toRotation(r: Raw): RotationState {
  const org = r['org_id'] as string;
  return {
    authorityId: r['authority_id'] as string,
    orgId: org === '' ? null : org,
    purpose: r['purpose'] as string,
    currentId: r['current_id'] as string,
    nextId: nul<string>(r['next_id']),
    phase: r['phase'] as RotationPhase,
    epoch: r['epoch'] as number,
    generation: r['generation'] as number,
    phaseAt: r['phase_at'] as number,
    startedAt: nul<number>(r['started_at']),
    graceMs: nul<number>(r['grace_ms']),
    retiredId: nul<string>(r['retired_id']),
    destroyAt: nul<number>(r['destroy_at']),
  };
}

/** CAs that sign client certificates: their new key signs from update_clients on; the others from update_servers. */
const CLIENT_PURPOSES: ReadonlySet<string> = new Set(['proxy-ssh-client', 'proxy-pki-client', 'gateway-client']);

/** The authorities row that signs new certificates in this state (pure). */
export function signerOf(s: RotationState): string {
  if (s.nextId === null) return s.currentId;
  if (s.phase === 'update_servers') return s.nextId;
  if (s.phase === 'update_clients' && CLIENT_PURPOSES.has(s.purpose)) return s.nextId;
  return s.currentId;
}

/** The authorities rows trusted in this state, the signer first (pure): both while a rotation runs. */
export function trustedOf(s: RotationState): string[] {
  if (s.nextId === null) return [s.currentId];
  const signer = signerOf(s);
  return [signer, signer === s.currentId ? s.nextId : s.currentId];
}
