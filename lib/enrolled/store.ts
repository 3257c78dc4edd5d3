/**
 * What the gateway's and the proxy's state databases share (lib/store underneath): the enrollment row's private
 * keys sealed at rest (secrets.ts), the revocations seen, the feed position, and the enrollment's generation, by
 * which a running `serve` notices a renewal written by another process (`renew` beside it).
 *
 * Each daemon's store extends this with its own enrollment columns; both name the shared tables alike:
 *   enrollment (id = 1, tls_key_pem, ssh_private_key, updated_at, …), revocations (kind, org_id '' = any,
 *   subject, seq, at), feed (id = 1, seq).
 */
import { GatewayError } from '../errors/codes.js';
import type { RevocationKind } from '../protocol/api.js';
import { CaClient, type CaClientOptions, normalizeFingerprint, parseCaUrls } from '../protocol/ca-client.js';
import type { Logger } from '../runtime/log.js';
import type { Db } from '../store/db.js';
import type { ComponentRole } from './keys.js';
import { type SecretKind, StateSecrets } from './secrets.js';

/**
 * The revocations table both daemons keep (addRevocation, revocations): '' in org_id means any org, so that no
 * NULL in the primary key lets one entry be stored twice. Laid out as the SQL text each migration always ran.
 */
export function revocationsTableSql(name: string): string {
  return `CREATE TABLE ${name} (
        kind TEXT NOT NULL,
        org_id TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL,
        seq INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (kind, org_id, subject)
      );`;
}

/**
 * The `CREATE TABLE enrollment` of both daemons' first migration: the row id, the daemon's `own` columns, the
 * columns both have (where the CA is, the TLS key and chain, the SSH key; replaceEnrollment and sharedEnrollment
 * write and read them), the daemon's `beforeFeed` columns, then the feed key and the times. Laid out as the SQL
 * text each migration always ran.
 */
export function enrollmentTableSql(own: readonly string[], beforeFeed: readonly string[] = []): string {
  const columns = [
    'id INTEGER PRIMARY KEY CHECK (id = 1)',
    ...own,
    'ca_url TEXT NOT NULL',
    'ca_fingerprint TEXT NOT NULL',
    'tls_key_pem TEXT NOT NULL',
    'tls_chain_pem TEXT NOT NULL',
    'ssh_private_key TEXT NOT NULL',
    ...beforeFeed,
    'revocation_feed_key TEXT NOT NULL',
    'not_after TEXT NOT NULL',
    'updated_at TEXT NOT NULL',
  ];
  return `CREATE TABLE enrollment (\n${columns.map((c) => `        ${c}`).join(',\n')}\n      );`;
}

export interface StoredRevocation {
  kind: RevocationKind;
  subject: string;
  /** null: any org (instance subjects, or an entry that names no org). */
  orgId: string | null;
}

/** The two keys as stored: sealed text (or plain, before the first open of an old state directory). */
interface KeyColumns {
  tls_key_pem: string;
  ssh_private_key: string;
}

/** What every enrolled component's state holds alike (its own fields beside these). */
export interface SharedEnrollment {
  caUrl: string;
  caFingerprint: string;
  /** PKCS#8 PEM of the TLS key. */
  tlsKeyPem: string;
  /** PEM chain of the TLS certificate, leaf first. */
  tlsChainPem: string;
  /** OpenSSH private key text of the SSH key. */
  sshPrivateKey: string;
  revocationFeedKey: string;
  /** ISO time the earliest certificate ends. */
  notAfter: string;
}

export class EnrolledStore {
  readonly db: Db;
  readonly secrets: StateSecrets;

  constructor(db: Db, secrets: StateSecrets) {
    this.db = db;
    this.secrets = secrets;
    this.#sealPlainKeys();
  }

  close(): void {
    this.db.close();
  }

  /**
   * Replaces the enrollment (first enrollment or renewal) in one transaction: the rotation version it was made
   * under, the row (the columns both daemons have, the two private keys sealed, and the daemon's own `columns`),
   * then the daemon's own tables (`tables`).
   */
  protected replaceEnrollment(
    s: SharedEnrollment & { rotation?: string },
    columns: Record<string, string | null>,
    now: Date,
    tables: () => void,
  ): void {
    const row: Record<string, string | null> = {
      ...columns,
      ca_url: s.caUrl,
      ca_fingerprint: s.caFingerprint,
      tls_key_pem: this.sealKey(s.tlsKeyPem, 'tls-private-key'),
      tls_chain_pem: s.tlsChainPem,
      ssh_private_key: this.sealKey(s.sshPrivateKey, 'ssh-private-key'),
      revocation_feed_key: s.revocationFeedKey,
      not_after: s.notAfter,
      updated_at: now.toISOString(),
    };
    const names = Object.keys(row);
    // Column names come from the daemons' code, never from input; checked anyway before they meet the SQL text.
    if (!names.every((n) => /^[a-z_]+$/.test(n))) throw new Error('enrollment: bad column name');
    this.db.transaction(() => {
      if (s.rotation) this.setRotationVersion(s.rotation);
      this.db.prepare('DELETE FROM enrollment').run();
      this.db
        .prepare(`INSERT INTO enrollment (id, ${names.join(', ')}) VALUES (1, ${names.map(() => '?').join(', ')})`)
        .run(...names.map((n) => row[n]));
      tables();
    })();
  }

  /** The columns both daemons' enrollment rows have, as a state: the two private keys opened. */
  protected sharedEnrollment(row: Record<string, string | null>): SharedEnrollment {
    const text = (k: string): string => String(row[k] ?? '');
    return {
      caUrl: text('ca_url'),
      caFingerprint: text('ca_fingerprint'),
      tlsKeyPem: this.openKey(text('tls_key_pem'), 'tls-private-key'),
      tlsChainPem: text('tls_chain_pem'),
      sshPrivateKey: this.openKey(text('ssh_private_key'), 'ssh-private-key'),
      revocationFeedKey: text('revocation_feed_key'),
      notAfter: text('not_after'),
    };
  }

  /** The enrollment row; E_CONFIG_INVALID (with the fix) when this `role` was never enrolled. */
  protected enrollmentRow<R>(role: ComponentRole): R {
    const row = this.db.prepare('SELECT * FROM enrollment WHERE id = 1').get() as R | undefined;
    if (!row) {
      throw new GatewayError(
        'E_CONFIG_INVALID',
        `${this.db.name}: not enrolled: run \`infisical-${role} enroll\` first`,
      );
    }
    return row;
  }

  isEnrolled(): boolean {
    return this.db.prepare('SELECT 1 FROM enrollment WHERE id = 1').get() !== undefined;
  }

  /** Changes whenever an enrollment or renewal is written, by this process or another. */
  generation(): string | undefined {
    const row = this.db.prepare('SELECT updated_at FROM enrollment WHERE id = 1').get() as
      | { updated_at: string }
      | undefined;
    return row?.updated_at;
  }

  /**
   * Adds a CA API pin beside the stored one (the API root a leaf-pinned component learned: CaClient
   * onRootLearned), so the pin survives the CA's next `api-cert`. Stored as a comma-separated list.
   */
  addCaPin(fingerprint: string): boolean {
    const row = this.db.prepare('SELECT ca_fingerprint FROM enrollment WHERE id = 1').get() as
      | { ca_fingerprint: string }
      | undefined;
    if (!row) return false;
    const pins = row.ca_fingerprint.split(',');
    if (pins.some((p) => normalizeFingerprint(p) === fingerprint)) return false;
    this.db.prepare('UPDATE enrollment SET ca_fingerprint = ? WHERE id = 1').run([...pins, fingerprint].join(','));
    return true;
  }

  /**
   * Fingerprints named in the config (ca_fingerprint, comma-separated), at start and on SIGHUP: added to the
   * stored pins and to the running client, so an operator can trust a new CA API root without re-enrolling.
   * Additive: a config written at enrollment time never takes away a pin learned since.
   */
  applyConfiguredPins(configured: string | undefined, client?: CaClient): string[] {
    const added: string[] = [];
    for (const raw of (configured ?? '').split(',').filter((p) => p.trim() !== '')) {
      const fp = normalizeFingerprint(raw);
      client?.addPin(fp);
      if (this.addCaPin(fp)) added.push(fp);
    }
    return added;
  }

  /**
   * The CA API URLs named in the config (ca_url: one, or a comma-separated list of the same CA's replicas), at
   * start: they replace the stored ones, so an operator adds or moves a CA replica by editing the config, and
   * `renew` and later starts use the same list. The pins are unchanged: every URL must present the pinned CA.
   * Returns the URLs in effect (stored form: comma-separated).
   */
  applyConfiguredCaUrls(configured: string | undefined, stored: string): string {
    if (configured === undefined || configured.trim() === '') return stored;
    const urls = parseCaUrls(configured)
      .map((u) => u.origin)
      .join(',');
    if (urls !== stored) this.db.prepare('UPDATE enrollment SET ca_url = ? WHERE id = 1').run(urls);
    return urls;
  }

  /**
   * applyConfiguredPins on SIGHUP, once the daemon's reload has succeeded (a reload refused for another key must
   * not leave a new pin trusted and stored), with the pins it added logged.
   */
  trustConfiguredPins(configured: string | undefined, client: CaClient, logger: Logger): void {
    const pins = this.applyConfiguredPins(configured, client);
    if (pins.length > 0) logger.info({ pins }, 'CA API fingerprint from the config trusted');
  }

  /** A CA client for the stored enrollment that stores the API root beside a leaf pin when it learns it. */
  caClient(
    state: { caUrl: string; caFingerprint: string },
    userAgent?: string,
    onFailover?: CaClientOptions['onFailover'],
  ): CaClient {
    return new CaClient({
      url: state.caUrl,
      fingerprint: state.caFingerprint,
      onRootLearned: (fp) => this.addCaPin(fp),
      ...(userAgent ? { userAgent } : {}),
      ...(onFailover ? { onFailover } : {}),
    });
  }

  /**
   * The running daemon's CA client: the configured CA URLs (applyConfiguredCaUrls) and pins (applyConfiguredPins)
   * over the stored ones, with each failover logged.
   */
  serveCaClient(
    state: { caUrl: string; caFingerprint: string },
    config: { ca_url?: string | undefined; ca_fingerprint?: string | undefined },
    userAgent: string,
    logger: Logger,
  ): CaClient {
    const caUrl = this.applyConfiguredCaUrls(config.ca_url, state.caUrl);
    if (caUrl !== state.caUrl) logger.info({ caUrls: caUrl.split(',') }, 'CA API URLs taken from the config (ca_url)');
    const ca = this.caClient({ ...state, caUrl }, userAgent, (e) =>
      logger.warn(
        { from: e.from, to: e.to, code: e.code, reason: e.reason },
        'CA API URL unreachable, trying the next one',
      ),
    );
    this.applyConfiguredPins(config.ca_fingerprint, ca);
    return ca;
  }

  protected sealKey(plaintext: string, kind: SecretKind): string {
    return this.secrets.seal(plaintext, kind);
  }

  protected openKey(stored: string, kind: SecretKind): string {
    return this.secrets.open(stored, kind);
  }

  /** Records a revocation; returns false when it was already known. */
  addRevocation(r: { kind: RevocationKind; subject: string; orgId?: string | null; seq?: number }, now = new Date()) {
    const info = this.db
      .prepare('INSERT OR IGNORE INTO revocations (kind, org_id, subject, seq, at) VALUES (?, ?, ?, ?, ?)')
      .run(r.kind, r.orgId ?? '', r.subject, r.seq ?? null, now.toISOString());
    return info.changes > 0;
  }

  revocations(): StoredRevocation[] {
    const rows = this.db.prepare('SELECT kind, org_id, subject FROM revocations ORDER BY rowid').all() as {
      kind: RevocationKind;
      org_id: string | null;
      subject: string;
    }[];
    return rows.map((r) => ({ kind: r.kind, subject: r.subject, orgId: r.org_id || null }));
  }

  feedSeq(): number {
    const row = this.db.prepare('SELECT seq FROM feed WHERE id = 1').get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /** The CA rotation version this component applied ("-": none yet; see lib/ca/rotation.ts). */
  rotationVersion(): string {
    const row = this.db.prepare('SELECT rotation FROM feed WHERE id = 1').get() as
      | { rotation: string | null }
      | undefined;
    return row?.rotation ?? '-';
  }

  setRotationVersion(version: string): void {
    this.db
      .prepare(
        'INSERT INTO feed (id, seq, rotation) VALUES (1, 0, ?) ON CONFLICT (id) DO UPDATE SET rotation = excluded.rotation',
      )
      .run(version);
  }

  /**
   * The CA's word that this component missed a rotation (E_ROTATION_MISSED), kept so that a restart says so
   * again instead of a plain "revoked"; undefined when it did not.
   */
  rotationMissed(): string | undefined {
    const row = this.db.prepare('SELECT rotation_missed FROM feed WHERE id = 1').get() as
      | { rotation_missed: string | null }
      | undefined;
    return row?.rotation_missed ?? undefined;
  }

  setRotationMissed(reason: string): void {
    this.db
      .prepare(
        'INSERT INTO feed (id, seq, rotation_missed) VALUES (1, 0, ?) ' +
          'ON CONFLICT (id) DO UPDATE SET rotation_missed = excluded.rotation_missed',
      )
      .run(reason);
  }

  setFeedSeq(seq: number): void {
    this.db
      .prepare('INSERT INTO feed (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq')
      .run(seq);
  }

  /** A state directory from before sealing: its keys are sealed in place, in one transaction, on first open. */
  #sealPlainKeys(): void {
    const row = this.db.prepare('SELECT tls_key_pem, ssh_private_key FROM enrollment WHERE id = 1').get() as
      | KeyColumns
      | undefined;
    if (!row) return;
    if (StateSecrets.isSealed(row.tls_key_pem) && StateSecrets.isSealed(row.ssh_private_key)) return;
    // The plain keys must not survive in freed pages or the WAL: zero what the UPDATE frees, then move the
    // WAL into the file and rewrite the file.
    this.db.pragma('secure_delete = ON');
    this.db
      .prepare('UPDATE enrollment SET tls_key_pem = ?, ssh_private_key = ? WHERE id = 1')
      .run(
        StateSecrets.isSealed(row.tls_key_pem) ? row.tls_key_pem : this.sealKey(row.tls_key_pem, 'tls-private-key'),
        StateSecrets.isSealed(row.ssh_private_key)
          ? row.ssh_private_key
          : this.sealKey(row.ssh_private_key, 'ssh-private-key'),
      );
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.exec('VACUUM');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }
}

/**
 * Calls `changed` when the stored enrollment's generation moves (a renewal written by `renew` in another
 * process, or by this one: the callback decides whether it has it already). A cheap indexed read every
 * `everyMs`; unref'd.
 */
export function watchGeneration(store: EnrolledStore, changed: () => void, everyMs = 2000): { stop(): void } {
  let seen = store.generation();
  const timer = setInterval(() => {
    let now: string | undefined;
    try {
      now = store.generation();
    } catch {
      return; // closed while stopping
    }
    if (now === seen) return;
    seen = now;
    changed();
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
