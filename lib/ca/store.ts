/**
 * The CA's SQLite repository: typed reads and writes over the schema in store-schema.ts, one store per group of
 * tables it owns (orgs, enrollment, issuance, revocations, audit, generations, seen, rotations). It decides
 * nothing. Every store shares the one connection, so the Authority calls them inside `transaction()` and an
 * issued certificate, its records and its audit row commit together, before the certificate is returned to
 * anyone.
 */

import Database from 'better-sqlite3';
import { type Db, migrate, openDatabase } from '../store/db.js';
import { AuditStore } from './store-audit.js';
import { EnrollmentStore } from './store-enrollment.js';
import { GenerationStore } from './store-generations.js';
import { IssuanceStore } from './store-issuance.js';
import { OrgStore } from './store-orgs.js';
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
  readonly db: Db;
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

  private constructor(db: Db) {
    this.db = db;
    this.orgs = new OrgStore(db);
    this.enrollment = new EnrollmentStore(db);
    this.issuance = new IssuanceStore(db);
    this.revocations = new RevocationStore(db);
    this.audit = new AuditStore(db);
    this.generations = new GenerationStore(db);
    this.seen = new SeenStore(db);
    this.rotations = new RotationStore(db);
  }

  /** Opens a database file (0600 in a 0700 directory, WAL, synchronous=FULL) or ':memory:', migrated forward. */
  static open(path: string): CaStore {
    if (path === ':memory:') return CaStore.wrap(new Database(':memory:'));
    return new CaStore(openDatabase({ path, migrations: MIGRATIONS }));
  }

  /** Migrates an already-open better-sqlite3 database (tests, lib/store). */
  static wrap(db: Db): CaStore {
    migrate(db, MIGRATIONS);
    return new CaStore(db);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one IMMEDIATE transaction: all its writes, to any of the stores above, commit together or not at all. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Moves when another connection commits (SQLite data_version): the daemon's hint that the CLI changed data. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** Forgets expired access tokens and nonces (they can no longer be used anyway). */
  pruneExpired(now: number): void {
    this.orgs.pruneAccessTokens(now);
    this.enrollment.pruneNonces(now);
  }

  getMeta(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }
  setMeta(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?')
      .run(key, value, value);
  }
}
