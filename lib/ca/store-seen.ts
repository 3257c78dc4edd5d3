/**
 * When the CA last heard from each gateway and proxy, and the version it said it runs (its User-Agent), as the
 * admin lists show them (store-schema.ts migration 3). Every feed read counts, but a long-polling component reads
 * every few seconds: a component's row is written at most once per WRITE_EVERY_MS (or when its version or its
 * rotation acknowledgement changes), so "last seen" is exact to that bound (rotation status calls a component
 * offline after 30 s without a read) and costs one small write every few seconds per component. A gateway
 * replica has a row of its own, component_id "<gateway id>/<replica>" ('/' is in no id, so it names no gateway).
 */
import type { SqlConnection } from '../store/sql.js';
import type { ComponentRef } from './store-generations.js';
import { nul, orgKey, type Raw } from './store-rows.js';

export const WRITE_EVERY_MS = 10_000;

export interface Seen {
  lastSeenAt: number;
  version: string | null;
  /** The rotation version it last said it applied (rotation.ts), null if it never sent one. */
  rotationAck: string | null;
}

const componentId = (ref: ComponentRef): string => (ref.replica == null ? ref.id : `${ref.id}/${ref.replica}`);

export class SeenStore {
  readonly #db: SqlConnection;
  /** What this process wrote last per component, so most reads write nothing. */
  readonly #written = new Map<string, Seen>();

  constructor(db: SqlConnection) {
    this.#db = db;
  }

  /** `rotationAck` undefined: the reader sent none (keeps what is stored). */
  record(ref: ComponentRef, atMs: number, version: string | null, rotationAck?: string): void {
    const key = `${ref.kind}\u0000${orgKey(ref.orgId)}\u0000${componentId(ref)}`;
    const last = this.#written.get(key);
    const ack = rotationAck ?? last?.rotationAck ?? null;
    if (last && atMs - last.lastSeenAt < WRITE_EVERY_MS && last.version === version && last.rotationAck === ack) return;
    this.#db
      .prepare(
        `INSERT INTO component_seen (kind, org_id, component_id, last_seen_at, version, rotation_ack)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (kind, org_id, component_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,
             version = excluded.version, rotation_ack = coalesce(?, component_seen.rotation_ack)`,
      )
      .run(ref.kind, orgKey(ref.orgId), componentId(ref), atMs, version, rotationAck ?? null, rotationAck ?? null);
    this.#written.set(key, { lastSeenAt: atMs, version, rotationAck: ack });
  }

  of(ref: ComponentRef): Seen | undefined {
    const r = this.#db
      .prepare(
        'SELECT last_seen_at, version, rotation_ack FROM component_seen WHERE kind = ? AND org_id = ? AND component_id = ?',
      )
      .get(ref.kind, orgKey(ref.orgId), componentId(ref)) as Raw | undefined;
    return r
      ? {
          lastSeenAt: r['last_seen_at'] as number,
          version: nul<string>(r['version']),
          rotationAck: nul<string>(r['rotation_ack']),
        }
      : undefined;
  }
}
