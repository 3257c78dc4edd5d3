/**
 * `infisical-ca migrate`: a SQLite CA made through the CLI, moved to a real PostgreSQL 15 (test/helpers/postgres.ts),
 * then used through the CLI and `serve` with --store: the same orgs and audit, the revocation feed continuing above
 * the copied seqs, the same API certificate. And the refusals: a target that holds a CA, a missing source, a file
 * that is not a CA database, a source in use by serve.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../lib/ca/store-schema.js';
import { migrate } from '../../lib/store/db.js';
import { freshDatabase, type Postgres, postgresUrl, startPostgres } from '../helpers/postgres.js';
import { cli, cliJson, serve } from './daemon-helpers.js';
import { TempDir } from './helpers.js';

const dir = new TempDir();
let pg: Postgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg?.stop();
  dir.remove();
});

interface Migrated {
  tables: { table: string; rows: number }[];
  sequences: { table: string; column: string; next: number }[];
}
interface AuditEntries {
  entries: { seq: number; action: string; outcome: string; subject: string }[];
}

/** Row counts of every CA table of a SQLite file. */
function sqliteCounts(path: string): Map<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    const names = db
      .prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'",
      )
      .all() as { name: string }[];
    return new Map(
      names.map(({ name }) => [name, (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n]),
    );
  } finally {
    db.close();
  }
}

test('a SQLite CA moved to PostgreSQL: same orgs, audit, feed and API certificate', { timeout: 180_000 }, async () => {
  const state = join(dir.path, 'sqlite-ca');
  const s = ['--state-dir', state];
  const init = await cliJson<{ apiFingerprint: string; apiCertificateFingerprint: string }>(['init', ...s]);
  await cliJson(['org', 'create', 'acme', ...s]);
  await cliJson(['identity', 'create', 'acme', 'boss', '--role', 'org-admin', ...s]);
  await cliJson(['identity', 'create', 'acme', 'leaver', ...s]);
  await cliJson(['token', '--org', 'acme', '--kind', 'gateway', '--subject', 'gw1', ...s]);
  const revoked = await cliJson<{ seq: number }>(['revoke', 'identity', 'leaver', '--org', 'acme', ...s]);
  const audit = await cliJson<AuditEntries>(['audit', ...s]);
  assert.ok(audit.entries.length >= 5, 'a few audit rows');
  const source = join(state, 'ca.db');
  const counts = sqliteCounts(source);

  const url = freshDatabase(postgresUrl(pg.port));
  const moved = await cliJson<Migrated>(['migrate', '--from', `sqlite:${source}`, '--to', url]);
  assert.deepEqual(
    new Map(moved.tables.map((t) => [t.table, t.rows])),
    counts,
    'every table copied, its rows counted as in the source',
  );
  assert.ok((counts.get('authorities') ?? 0) > 0 && (counts.get('audit') ?? 0) > 0);
  const auditSeq = moved.sequences.find((q) => q.table === 'audit');
  assert.equal(auditSeq?.next, Math.max(...audit.entries.map((e) => e.seq)) + 1);

  // The CLI on the PostgreSQL store sees what the SQLite one did.
  const p = ['--state-dir', state, '--store', url];
  assert.deepEqual(
    (await cliJson<{ orgId: string }[]>(['org', 'list', ...p])).map((o) => o.orgId),
    ['acme'],
  );
  const identities = await cliJson<{ identityId: string; revoked: boolean }[]>(['identity', 'list', 'acme', ...p]);
  assert.deepEqual(
    identities.map((i) => [i.identityId, i.revoked]),
    [
      ['boss', false],
      ['leaver', true],
    ],
  );
  const movedAudit = await cliJson<AuditEntries>(['audit', ...p]);
  assert.deepEqual(movedAudit.entries.slice(0, audit.entries.length), audit.entries, 'the same audit rows and seqs');

  // The feed continues: a new revocation's seq is above every copied one.
  await cliJson(['identity', 'create', 'acme', 'later', ...p]);
  const next = await cliJson<{ seq: number }>(['revoke', 'identity', 'later', '--org', 'acme', ...p]);
  assert.ok(next.seq > revoked.seq, `new revocation seq ${next.seq} > copied ${revoked.seq}`);

  // A replica: a copy of the state directory (its sealing key) serving the PostgreSQL store.
  const replica = join(dir.path, 'replica');
  mkdirSync(replica, { mode: 0o700 });
  copyFileSync(join(state, 'sealing.key'), join(replica, 'sealing.key'));
  chmodSync(join(replica, 'sealing.key'), 0o600);
  const served = await serve(replica, ['--store', url]);
  try {
    assert.equal(served.fingerprint, init.apiFingerprint, 'the same API root');
    const line = served.lines.find((l) => l['msg'] === 'serving');
    assert.equal(line?.['certificateFingerprint'], init.apiCertificateFingerprint, 'the same API certificate');
  } finally {
    served.child.kill('SIGTERM');
    await served.exited;
  }

  // Refused: a target that already holds a CA; nothing written (the counts stay).
  const auditRows = async () =>
    (await cliJson<AuditEntries>(['audit', '--state-dir', state, '--store', url])).entries.length;
  const rowsBefore = await auditRows();
  const again = await cli(['migrate', '--from', `sqlite:${source}`, '--to', url]);
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /E_CONFLICT: .*already holds CA records \(.*authorities: \d+.*nothing was written/);
  assert.equal(await auditRows(), rowsBefore, 'nothing written');
});

test('the text report, the default source, file:PATH as target', { timeout: 120_000 }, async () => {
  const state = join(dir.path, 'text-ca');
  await cliJson(['init', '--state-dir', state]);
  const url = freshDatabase(postgresUrl(pg.port));
  const urlFile = dir.write('store-url', url);
  const r = await cli(['migrate', '--state-dir', state, '--to', `file:${urlFile}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`from ${join(state, 'ca.db')} to postgres://`));
  assert.match(r.stdout, /^ {2}authorities +\d+$/m);
  assert.match(r.stdout, /^ {2}audit +\d+$/m);
  assert.match(r.stdout, /sequences continue at: .*audit\.seq \d+/);
  assert.match(r.stdout, new RegExp(`set store to file:${urlFile}`));
});

test('refusals: missing source, not a CA database, source in use, bad arguments', { timeout: 120_000 }, async () => {
  const url = freshDatabase(postgresUrl(pg.port));
  const missing = await cli(['migrate', '--from', `sqlite:${join(dir.path, 'nope', 'ca.db')}`, '--to', url]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /E_NOT_FOUND: .*no SQLite CA database at/);

  const other = join(dir.path, 'other.db');
  new Database(other).exec('CREATE TABLE t (x)');
  const notCa = await cli(['migrate', '--from', `sqlite:${other}`, '--to', url]);
  assert.equal(notCa.code, 1);
  assert.match(notCa.stderr, /E_STORE_VERSION: .*not a CA database/);

  // An older CA schema is refused (the columns are copied one to one); any command of this build migrates it.
  const older = join(dir.path, 'older', 'ca.db');
  mkdirSync(join(dir.path, 'older'), { mode: 0o700 });
  const olderDb = new Database(older);
  migrate(olderDb, MIGRATIONS.slice(0, 3));
  olderDb.prepare("INSERT INTO meta (key, value) VALUES ('initialized_at', 'x')").run();
  olderDb.close();
  const old = await cli(['migrate', '--from', `sqlite:${older}`, '--to', url]);
  assert.equal(old.code, 1);
  assert.match(
    old.stderr,
    /E_STORE_VERSION: .*at schema version 3, this build copies version \d+ only: run any command/,
  );

  const badFrom = await cli(['migrate', '--from', other, '--to', url]);
  assert.equal(badFrom.code, 2);
  assert.match(badFrom.stderr, /E_REQUEST_INVALID: .*expected sqlite:PATH/);
  const badTo = await cli(['migrate', '--from', `sqlite:${other}`, '--to', 'mysql://x/y']);
  assert.equal(badTo.code, 2);

  // A source that `serve` is running on: stop it first.
  const state = join(dir.path, 'busy-ca');
  await cliJson(['init', '--state-dir', state]);
  const served = await serve(state);
  try {
    const busy = await cli(['migrate', '--state-dir', state, '--to', url]);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /in use by infisical-ca serve/);
  } finally {
    served.child.kill('SIGTERM');
    await served.exited;
  }
});
