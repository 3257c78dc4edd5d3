/**
 * A throw-away PostgreSQL 15 for tests: initdb + pg_ctl as the `postgres` user (initdb refuses root) in a
 * private temp directory, listening on 127.0.0.1 and a unix socket in that directory only; trust auth for
 * the `postgres` role. Stopped (immediate) and removed by `stop()`.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../helpers/openssh.js';

const run = promisify(execFile);
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Postgres {
  port: number;
  dir: string;
  stop(): Promise<void>;
}

async function asPostgres(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  // As root, drop to the postgres user; as anyone else, run as ourselves.
  if (userInfo().uid === 0) return run('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: 60_000 });
  return run(cmd, args, { timeout: 60_000 });
}

export async function startPostgres(): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-pg-'));
  if (userInfo().uid === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = join(dir, 'data');
  await asPostgres(`${PG_BIN}/initdb`, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  await asPostgres(`${PG_BIN}/pg_ctl`, ['-D', data, '-l', join(dir, 'log'), '-o', opts, '-w', '-t', '60', 'start']);
  return {
    port,
    dir,
    stop: async () => {
      await asPostgres(`${PG_BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs psql against host:port as postgres; resolves with stdout (unaligned, tuples only). */
export async function psql(port: number, sql: string): Promise<string> {
  const { stdout } = await run(
    'psql',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-X',
      '-A',
      '-t',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      sql,
    ],
    { timeout: 30_000, env: { ...process.env, PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' } },
  );
  return stdout.trim();
}
