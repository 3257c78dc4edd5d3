/**
 * A throw-away PostgreSQL 15 for tests: initdb + pg_ctl as the `postgres` user (initdb refuses root) in a
 * private temp directory, listening on 127.0.0.1 and a unix socket in that directory only; trust auth for
 * the `postgres` role. Stopped (immediate) and removed by `stop()`.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './openssh.js';

const run = promisify(execFile);
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Postgres {
  port: number;
  dir: string;
  /** Stops the server (fast shutdown: connections cut), keeping its data; `resume` starts it again. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
}

async function asPostgres(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  // As root, drop to the postgres user; as anyone else, run as ourselves.
  if (userInfo().uid === 0) return run('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: 60_000 });
  return run(cmd, args, { timeout: 60_000 });
}

/**
 * `durable`: fsync as a production server does (benchmarks beside SQLite's synchronous=FULL); tests leave it off
 * (nothing they write needs to outlive a power cut, and fsync=off keeps them fast on a loaded machine).
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-pg-'));
  if (userInfo().uid === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = join(dir, 'data');
  await asPostgres(`${PG_BIN}/initdb`, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${options.durable ? '' : ' -c fsync=off'}`;
  const start = () =>
    asPostgres(`${PG_BIN}/pg_ctl`, ['-D', data, '-l', join(dir, 'log'), '-o', opts, '-w', '-t', '60', 'start']);
  await start();
  return {
    port,
    dir,
    pause: async () => {
      await asPostgres(`${PG_BIN}/pg_ctl`, ['-D', data, '-m', 'fast', '-w', 'stop']);
    },
    resume: async () => {
      await start();
    },
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

/** The environment variable that runs the CA's in-process tests on PostgreSQL (test/ca/postgres-engine.test.ts). */
export const CA_TEST_POSTGRES = 'INFISICAL_TEST_CA_POSTGRES';

/** A URL for the server at `port` as the `postgres` role (trust authentication on loopback). */
export function postgresUrl(port: number, database = 'postgres'): string {
  return `postgres://postgres@127.0.0.1:${port}/${database}`;
}

let databases = 0;
/** One admin connection per server for the process's life (finishing a libpq binding object early is unsafe). */
const admins = new Map<string, { exec(sql: string): void; resultStatus(): string; resultErrorMessage(): string }>();
/**
 * A new, empty database on the server `baseUrl` names, created with libpq's blocking calls (so a synchronous
 * fixture can open a store on it); its URL.
 */
export function freshDatabase(baseUrl: string): string {
  const pq = admins.get(baseUrl) ?? new (createRequire(import.meta.url)('libpq'))();
  if (!admins.has(baseUrl)) {
    pq.connectSync(baseUrl);
    admins.set(baseUrl, pq);
  }
  databases += 1;
  const name = `t${process.pid}_${databases}_${randomBytes(3).toString('hex')}`;
  pq.exec(`CREATE DATABASE ${name}`);
  const failed = pq.resultStatus() !== 'PGRES_COMMAND_OK' ? pq.resultErrorMessage() : '';
  if (failed) throw new Error(`CREATE DATABASE ${name}: ${failed}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * A TCP relay to a PostgreSQL server that can lose a reply, in a child process (the store's calls block this
 * one's event loop): `cutAfter(text)` arms it, and the next message from a client that contains `text` (the SQL of
 * a simple or extended query) is passed to the server, which runs it, but the server's answer is dropped and
 * both sides of that connection are cut: a statement applied whose reply was lost. `refuse(true)` makes new
 * connections close at once (the server out of reach).
 */
export interface ReplyCutter {
  port: number;
  cutAfter(text: string): Promise<void>;
  refuse(on: boolean): Promise<void>;
  close(): void;
}

const CUTTER = `
const { connect, createServer } = require('node:net');
const serverPort = Number(process.argv[1]);
let armed, refuse = false;
process.on('message', (m) => {
  if ('arm' in m) armed = m.arm;
  if ('refuse' in m) refuse = m.refuse;
  process.send('ok');
});
const server = createServer((client) => {
  if (refuse) return client.destroy();
  const upstream = connect({ host: '127.0.0.1', port: serverPort });
  client.on('error', () => {});
  upstream.on('error', () => {});
  let cutting = false;
  client.on('data', (chunk) => {
    if (armed !== undefined && chunk.includes(armed)) { armed = undefined; cutting = true; }
    upstream.write(chunk);
  });
  upstream.on('data', (chunk) => {
    if (!cutting) return void client.write(chunk);
    client.destroy();
    upstream.destroy();
  });
  client.once('close', () => upstream.destroy());
  upstream.once('close', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

export async function replyCutter(serverPort: number): Promise<ReplyCutter> {
  const child = spawn(process.execPath, ['-e', CUTTER, String(serverPort)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`the relay exited (${code})`)));
  });
  const tell = (m: object) =>
    new Promise<void>((resolve) => {
      child.once('message', () => resolve());
      child.send(m);
    });
  return {
    port,
    cutAfter: (text) => tell({ arm: text }),
    refuse: (on) => tell({ refuse: on }),
    close: () => child.kill(),
  };
}
