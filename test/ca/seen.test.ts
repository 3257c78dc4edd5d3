/** store-seen.ts: "last seen" costs at most one write a minute per component, and a new version is written at once. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MIGRATIONS } from '../../lib/ca/store-schema.js';
import { SeenStore, WRITE_EVERY_MS } from '../../lib/ca/store-seen.js';
import { openDatabase } from '../../lib/store/db.js';
import { sqliteConnection } from '../../lib/store/sql.js';
import { TempDir } from './helpers.js';

const dir = new TempDir();
after(() => dir.remove());

test('feed reads are recorded at most once per WRITE_EVERY_MS per component; a version change at once', () => {
  const db = openDatabase({ path: join(dir.path, 'ca.db'), migrations: MIGRATIONS });
  const writes = () => db.prepare('SELECT total_changes() AS n').get() as { n: number };
  const seen = new SeenStore(sqliteConnection(db));
  const gw = { kind: 'gateway' as const, orgId: 'acme', id: 'gw1' };
  const px = { kind: 'proxy' as const, orgId: null, id: 'p1' };
  const t0 = 1_700_000_000_000;
  const before = writes().n;
  seen.record(gw, t0, '0.1.0');
  const reads = Math.floor(WRITE_EVERY_MS / 500) - 1;
  for (let i = 1; i <= reads; i++) seen.record(gw, t0 + i * 500, '0.1.0'); // a read every half second
  assert.equal(writes().n - before, 1, `one write for ${reads + 1} reads within WRITE_EVERY_MS`);
  assert.deepEqual(seen.of(gw), { lastSeenAt: t0, version: '0.1.0', rotationAck: null });
  seen.record(gw, t0 + WRITE_EVERY_MS, '0.1.0');
  assert.deepEqual(seen.of(gw), { lastSeenAt: t0 + WRITE_EVERY_MS, version: '0.1.0', rotationAck: null });
  seen.record(gw, t0 + WRITE_EVERY_MS + 1000, '0.2.0');
  assert.deepEqual(
    seen.of(gw),
    { lastSeenAt: t0 + WRITE_EVERY_MS + 1000, version: '0.2.0', rotationAck: null },
    'upgrade seen at once',
  );
  seen.record(gw, t0 + WRITE_EVERY_MS + 1500, '0.2.0', 'abc123');
  assert.equal(seen.of(gw)?.rotationAck, 'abc123', 'a rotation acknowledgement is written at once');
  seen.record(gw, t0 + 3 * WRITE_EVERY_MS, '0.2.0');
  assert.equal(seen.of(gw)?.rotationAck, 'abc123', 'a read without one keeps it');
  seen.record(px, t0, null);
  assert.deepEqual(seen.of(px), { lastSeenAt: t0, version: null, rotationAck: null });
  assert.equal(seen.of({ kind: 'proxy', orgId: 'acme', id: 'p1' }), undefined, 'an org proxy is another component');
  db.close();
});
