/**
 * One process at a time on a state directory (`serve`, `enroll`). The lock is a POSIX advisory lock that SQLite
 * takes for BEGIN EXCLUSIVE on <dir>/state.lock (an empty database in rollback-journal mode, held for the
 * process's life): the kernel drops it when the process ends, however it ends, so a SIGKILLed or crashed serve
 * never blocks the next start and there is no stale lock to judge by pid.
 *
 * Beside it, <dir>/state.lock.json says who holds it (pid, command, start time, and the ops address once serve
 * has one) for the refusal message and for `status`. That file is information only, never the lock: it may
 * outlive a killed holder, so readers check that its pid is alive.
 */
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GatewayError } from '../errors/codes.js';

const LOCK_FILE = 'state.lock';
const HOLDER_FILE = 'state.lock.json';

export interface LockHolder {
  pid: number;
  /** What holds it, as an operator would type it: "infisical-gateway serve". */
  command: string;
  since: string;
  /** The ops endpoint of a running serve (http://127.0.0.1:9472). */
  ops?: string;
}

export class StateLock {
  readonly dir: string;
  #db: Database.Database | undefined;
  #holder: LockHolder;

  private constructor(dir: string, db: Database.Database, holder: LockHolder) {
    this.dir = dir;
    this.#db = db;
    this.#holder = holder;
  }

  /**
   * Takes the directory's lock (the directory must exist), or refuses with E_CONFIG_INVALID naming the
   * process that holds it. Never waits.
   */
  static acquire(dir: string, command: string, pid = process.pid): StateLock {
    const path = join(dir, LOCK_FILE);
    closeSync(openSync(path, 'a', 0o600));
    const db = new Database(path);
    try {
      db.pragma('busy_timeout = 0');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
      const holder = StateLock.holder(dir);
      const who = holder ? `${holder.command} (pid ${holder.pid}, since ${holder.since})` : 'another process';
      throw new GatewayError(
        'E_CONFIG_INVALID',
        `state directory ${dir} is in use by ${who}: one process at a time; stop it first, or give this one its own --state-dir`,
      );
    }
    const lock = new StateLock(dir, db, { pid, command, since: new Date().toISOString() });
    lock.#write();
    return lock;
  }

  /** Who holds the lock now, as its holder file says; undefined when none does (or its pid is gone). */
  static holder(dir: string): LockHolder | undefined {
    let holder: LockHolder;
    try {
      holder = JSON.parse(readFileSync(join(dir, HOLDER_FILE), 'utf8')) as LockHolder;
    } catch {
      return undefined;
    }
    return typeof holder.pid === 'number' && pidAlive(holder.pid) ? holder : undefined;
  }

  /** Adds to what the holder file says (serve's ops address once it listens). */
  update(extra: Partial<Pick<LockHolder, 'ops'>>): void {
    this.#holder = { ...this.#holder, ...extra };
    this.#write();
  }

  release(): void {
    if (!this.#db) return;
    rmSync(join(this.dir, HOLDER_FILE), { force: true });
    this.#db.close(); // ends the transaction: the lock is free
    this.#db = undefined;
  }

  #write(): void {
    const file = join(this.dir, HOLDER_FILE);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(this.#holder)}\n`, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
