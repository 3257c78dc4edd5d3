/**
 * A throw-away PostgreSQL 15 on 127.0.0.1 for end-to-end tests: initdb in a temp dir as the `postgres` user
 * (initdb refuses root), trust authentication on loopback only, unix socket inside the temp dir.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../helpers/openssh.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const run = promisify(execFile);

export interface Postgres {
  port: number;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'client-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(dir, uid, gid);
  const port = await freePort();
  const as = (cmd: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', join(PG_BIN, cmd), ...args], { timeout: 30_000 });
  await as('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  await as('pg_ctl', [
    '-D',
    data,
    '-w',
    '-l',
    join(dir, 'log'),
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    'start',
  ]);
  return {
    port,
    stop: async () => {
      await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
