/**
 * ADAPTER until lib/store lands: open a SQLite database (WAL, foreign keys, busy timeout), apply forward-only
 * migrations, and seal/unseal small secrets with AES-256-GCM. Kept tiny and private to lib/ca so it can be
 * swapped for lib/store without touching callers (store.ts and keyring.ts import only from here).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GatewayError } from '../protocol/errors.js';

export type Db = Database.Database;

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Opens (creating when needed) a database file, or ':memory:'. The directory is created 0700. */
export function openDatabase(path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  if (path !== ':memory:') chmodSync(path, 0o600);
  db.pragma('journal_mode = WAL');
  // FULL: a commit survives power loss, not only a process crash (a returned cert must be on disk).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}

/**
 * Applies every migration above the database's user_version, each in its own transaction. A database newer
 * than this code (a downgrade) is refused: forward only.
 */
export function migrate(db: Db, migrations: readonly Migration[]): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  if (current > latest) {
    throw new GatewayError('E_STORE_VERSION', `database schema ${current} is newer than this program (${latest})`);
  }
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return latest;
}

const SEAL_VERSION = 1;
export const SEAL_KEY_BYTES = 32;

/** AES-256-GCM: version(1) | iv(12) | tag(16) | ciphertext. `context` is bound as AAD (a key sealed for one CA
 * cannot be swapped into another CA's row). */
export function seal(key: Buffer, plaintext: Buffer, context: string): Buffer {
  checkKey(key);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([SEAL_VERSION]), iv, cipher.getAuthTag(), ct]);
}

export function unseal(key: Buffer, sealed: Buffer, context: string): Buffer {
  checkKey(key);
  if (sealed.length < 29 || sealed[0] !== SEAL_VERSION) throw new GatewayError('E_SEALED_MALFORMED');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13));
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(sealed.subarray(13, 29));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]);
  } catch {
    throw new GatewayError('E_SEALED_TAMPERED', context);
  }
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== SEAL_KEY_BYTES) {
    throw new GatewayError('E_SEALED_KEY', `expected ${SEAL_KEY_BYTES} bytes`);
  }
}

/** Reads a 32-byte key file (raw or base64), refusing group/other-readable files. */
export function readSealKey(path: string): Buffer {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw new GatewayError('E_SEALED_KEY', `${path}: cannot read`);
  }
  if ((st.mode & 0o077) !== 0)
    throw new GatewayError('E_STORE_PERMISSIONS', `${path}: must not be group/other readable`);
  const raw = readFileSync(path);
  const key = raw.length === SEAL_KEY_BYTES ? raw : Buffer.from(raw.toString('utf8').trim(), 'base64');
  checkKey(key);
  return key;
}

/** Creates a new random key file (0600); refuses to overwrite one. */
export function createSealKey(path: string): Buffer {
  if (existsSync(path)) throw new GatewayError('E_SEALED_KEY', `${path}: already exists`);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const key = randomBytes(SEAL_KEY_BYTES);
  writeFileSync(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

/** $STATE_DIRECTORY (systemd) or /var/lib/infisical-ca. */
export function defaultStateDirectory(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const fromSystemd = env['STATE_DIRECTORY']?.split(':')[0];
  return fromSystemd || '/var/lib/infisical-ca';
}
