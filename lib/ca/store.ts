/**
 * The CA's SQLite repository: typed reads and writes over the schema in store-schema.ts, one store per group of
 * tables it owns (orgs, enrollment, issuance, revocations, audit, generations, seen, rotations). It decides
 * nothing. Every store shares the one connection, so the Authority calls them inside `transaction()` and an
 * issued certificate, its records and its audit row commit together, before the certificate is returned to
 * anyone.
 */

import Database from 'better-sqlite3';
import { type Db, migrate, openDatabase } from '../store/db.js';
import { isPostgresUrl, openPostgres, postgresSchemaVersion } from '../store/postgres.js';
import { type SqlConnection, sqliteConnection } from '../store/sql.js';
import { AuditStore } from './store-audit.js';
import { EnrollmentStore } from './store-enrollment.js';
import { GenerationStore } from './store-generations.js';
import { IssuanceStore } from './store-issuance.js';
import { OrgStore } from './store-orgs.js';
import { PenaltyStore } from './store-penalties.js';
import { RevocationStore } from './store-revocations.js';
import { RotationStore } from './store-rotations.js';
import { MIGRATIONS } from './store-schema.js';
import { SeenStore } from './store-seen.js';

export type {
  AuditRow,
  AuthorityRow,
  CertificateRow,
  EnrollmentTokenRow,
  GatewayRow,
  GrantRow,
  IdentityRow,
  ProxyRow,
  RevocationRow,
} from './store-rows.js';

export class CaStore {
  /** The connection every table store shares: SQLite (a file, the default) or PostgreSQL (several replicas). */
  readonly sql: SqlConnection;
  /** Orgs, their identities and access tokens, their policy rules (store-orgs.ts). */
  readonly orgs: OrgStore;
  /** Enrollment tokens, enrolled gateways and proxies, signed-request nonces (store-enrollment.ts). */
  readonly enrollment: EnrollmentStore;
  /** CA key material, issued certificates, grants (store-issuance.ts). */
  readonly issuance: IssuanceStore;
  /** The revocation list the feed carries (store-revocations.ts). */
  readonly revocations: RevocationStore;
  /** The audit log (store-audit.ts). */
  readonly audit: AuditStore;
  /** Certificate generations of gateways and proxies (store-generations.ts). */
  readonly generations: GenerationStore;
  /** When each gateway and proxy last read the feed, and its version (store-seen.ts). */
  readonly seen: SeenStore;
  /** The rotation state of each CA (store-rotations.ts). */
  readonly rotations: RotationStore;
  /** Failure penalties per source, shared by CA replicas on PostgreSQL (store-penalties.ts). */
  readonly penalties: PenaltyStore;

  private constructor(sql: SqlConnection, sqlite?: Db) {
    this.sql = sql;
    this.#sqlite = sqlite;
    this.orgs = new OrgStore(sql);
    this.enrollment = new EnrollmentStore(sql);
    this.issuance = new IssuanceStore(sql);
    this.revocations = new RevocationStore(sql);
    this.audit = new AuditStore(sql);
    this.generations = new GenerationStore(sql);
    this.seen = new SeenStore(sql);
    this.rotations = new RotationStore(sql);
    this.penalties = new PenaltyStore(sql);
  }
  readonly #sqlite: Db | undefined;

  /**
   * Opens the store at `location`: a `postgres://` URL (connected and migrated forward; several CA replicas may
   * share it), ':memory:', or a SQLite file (0600 in a 0700 directory, WAL, synchronous=FULL), migrated forward.
   */
  static open(location: string): CaStore {
    if (isPostgresUrl(location)) return new CaStore(openPostgres(location, MIGRATIONS));
    if (location === ':memory:') return CaStore.wrap(new Database(':memory:'));
    const db = openDatabase({ path: location, migrations: MIGRATIONS });
    return new CaStore(sqliteConnection(db), db);
  }

  /** Migrates an already-open better-sqlite3 database (tests, lib/store). */
  static wrap(db: Db): CaStore {
    migrate(db, MIGRATIONS);
    return new CaStore(sqliteConnection(db), db);
  }

  /** The better-sqlite3 handle when the engine is SQLite (pragmas, backups); undefined on PostgreSQL. */
  get sqlite(): Db | undefined {
    return this.#sqlite;
  }

  close(): void {
    this.sql.close();
  }

  /**
   * Runs `fn` in one transaction holding the writers' lock (SQLite IMMEDIATE; PostgreSQL an advisory lock shared
   * by every replica): all its writes, to any of the stores above, commit together or not at all.
   */
  transaction<T>(fn: () => T): T {
    return this.sql.transaction(fn);
  }

  /** Moves when another process or replica said it changed what a feed reader sees: the daemon's hint to wake feeds. */
  dataVersion(): number {
    return this.sql.changeVersion();
  }

  /** Tells other processes and replicas that what a feed reader sees changed (a NOTIFY on PostgreSQL). */
  announceChange(): void {
    this.sql.announceChange();
  }

  schemaVersion(): number {
    if (this.#sqlite) return this.#sqlite.pragma('user_version', { simple: true }) as number;
    return postgresSchemaVersion(this.sql);
  }

  /** Forgets expired access tokens and nonces (they can no longer be used anyway) and long-quiet penalties. */
  pruneExpired(now: number): void {
    this.orgs.pruneAccessTokens(now);
    this.enrollment.pruneNonces(now);
    this.penalties.prune(now);
  }

  getMeta(key: string): string | undefined {
    const row = this.sql.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }
  setMeta(key: string, value: string): void {
    this.sql
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?')
      .run(key, value, value);
  }
}
