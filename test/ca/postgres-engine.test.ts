/**
 * The CA's in-process suite again, on PostgreSQL: a real PostgreSQL 15 (the distribution's, initdb into a temp
 * directory, loopback only) is started here, and the files below run in a child `node --test` with
 * INFISICAL_TEST_CA_POSTGRES set, so every Authority they open (helpers.ts testStore) gets a fresh database on it
 * instead of SQLite in memory. The same assertions, the other engine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CA_TEST_POSTGRES, type Postgres, postgresUrl, startPostgres } from '../helpers/postgres.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Every file of this folder whose Authority comes from helpers.ts (the daemon tests run processes on SQLite). */
const SUITE = [
  'authority',
  'api-pin',
  'changes',
  'feed',
  'http',
  'interop',
  'refusals',
  'renew',
  'rotation',
  'store-penalties',
  'supersede',
].map((name) => join(here, `${name}.test.js`));

let pg: Postgres;
before(async () => {
  pg = await startPostgres();
});
after(() => pg?.stop());

test('the CA suite passes on PostgreSQL', { timeout: 15 * 60_000 }, async () => {
  // Without the runner's NODE_TEST_CONTEXT, or the child takes itself for a nested run and runs nothing.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, ['--test', '--test-reporter=tap', ...SUITE], {
    env: { ...env, [CA_TEST_POSTGRES]: postgresUrl(pg.port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? Number.NaN);
  const failures = out
    .split('\n')
    .filter((line) => /^\s*not ok /.test(line))
    .join('\n');
  assert.equal(count('fail'), 0, `failed on PostgreSQL:\n${failures}\n${out.slice(-6000)}`);
  assert.ok(count('pass') >= 50, `the suite ran (${count('pass')} passed)\n${out.slice(-3000)}`);
  assert.equal(code, 0, out.slice(-3000));
});
