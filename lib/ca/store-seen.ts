/**
 * When the CA last heard from each gateway and proxy, and the version it said it runs (its User-Agent), as the
 * admin lists show them (store-schema.ts migration 3). Every feed read counts, but a long-polling component reads
 * every few seconds: a component's row is written at most once per WRITE_EVERY_MS (or when its version changes),
 * so "last seen" is exact to that bound and costs one small write a minute per component.
 */
import type { Db } from '../store/db.js';
import type { ComponentRef } from './store-generations.js';
import { nul, orgKey, type Raw } from './store-rows.js';

export const WRITE_EVERY_MS = 60_000;

export interface Seen {
  lastSeenAt: number;
  version: string | null;
}

export class SeenStore {
  readonly #db: Db;
  /** What this process wrote last per component, so most reads write nothing. */
  readonly #written = new Map<string, Seen>();

  constructor(db: Db) {
    this.#db = db;
  }

  record(ref: ComponentRef, atMs: number, version: string | null): void {
    const key = `${ref.kind}\u0000${orgKey(ref.orgId)}\u0000${ref.id}`;
    const last = this.#written.get(key);
    if (last && atMs - last.lastSeenAt < WRITE_EVERY_MS && last.version === version) return;
    this.#db
      .prepare(
        `INSERT INTO component_seen (kind, org_id, component_id, last_seen_at, version) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (kind, org_id, component_id) DO UPDATE SET last_seen_at = excluded.last_seen_at,
             version = excluded.version`,
      )
      .run(ref.kind, orgKey(ref.orgId), ref.id, atMs, version);
    this.#written.set(key, { lastSeenAt: atMs, version });
  }

  of(ref: ComponentRef): Seen | undefined {
    const r = this.#db
      .prepare('SELECT last_seen_at, version FROM component_seen WHERE kind = ? AND org_id = ? AND component_id = ?')
      .get(ref.kind, orgKey(ref.orgId), ref.id) as Raw | undefined;
    return r ? { lastSeenAt: r['last_seen_at'] as number, version: nul<string>(r['version']) } : undefined;
  }
}
