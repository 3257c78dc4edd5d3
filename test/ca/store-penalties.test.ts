/**
 * lib/ca/store-penalties.ts, the failure penalties CA replicas share, on SQLite and (when
 * test/ca/postgres-engine.test.ts runs this file with INFISICAL_TEST_CA_POSTGRES) on PostgreSQL: one upsert
 * charges what throttle.ts computes in memory; charges do not wait for the writers' lock; two processes charging
 * one source at once both count; each bucket keeps a bounded number of rows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CaStore } from '../../lib/ca/store.js';
import { PenaltyStore } from '../../lib/ca/store-penalties.js';
import { chargePenalty, type FailurePolicy, FailureThrottle, type Penalty } from '../../lib/ca/throttle.js';
import { runModuleScript } from '../helpers/module-script.js';
import { testStore } from './helpers.js';

const POLICIES: FailurePolicy[] = [
  { burst: 3, refillMs: 1000, maxDelayMs: 8000 },
  { burst: 10, refillMs: 10_000, maxDelayMs: 60_000 },
  { burst: 2, refillMs: 300, maxDelayMs: 10_000 },
];

function open(location = testStore()): { store: CaStore; location: string } {
  return { store: CaStore.open(location), location };
}

test('a charge in the store gives the penalty throttle.ts computes in memory, step by step', () => {
  const { store } = open();
  try {
    for (const [i, policy] of POLICIES.entries()) {
      let expected: Penalty | undefined;
      // Failures close together (waits grow), then apart (levels decay), at times that are not whole refills.
      let now = 1_900_000_000_000;
      const gaps = [0, 0, 0, 10, 250, 999, 1, 4000, 0, 0, 17_345, 60_000, 2, 2, 2, 123_456, 0, 0, 0, 0, 0, 0];
      for (const gap of gaps) {
        now += gap;
        expected = chargePenalty(expected, now, policy);
        const got = store.penalties.charge(`b${i}`, 'src', now, policy);
        assert.deepEqual(got, expected, `policy ${i}, at +${gap} ms`);
        assert.deepEqual(store.penalties.get(`b${i}`, 'src'), expected);
      }
    }
    // Through the throttle: the shared book refuses as the memory one does.
    const policy = POLICIES[0]!;
    const shared = new FailureThrottle(policy, store.penalties.book('login'));
    const memory = new FailureThrottle(policy);
    for (let i = 0; i < 6; i++) assert.equal(shared.fail('10.0.0.1', 5000), memory.fail('10.0.0.1', 5000));
    assert.deepEqual(shared.check('10.0.0.1', 5001), memory.check('10.0.0.1', 5001));
  } finally {
    store.close();
  }
});

test('each bucket keeps its most recently charged sources, a bounded number of them', () => {
  const { store } = open();
  try {
    const penalties = new PenaltyStore(store.sql, { maxRowsPerBucket: 50, capEvery: 10 });
    const policy = POLICIES[0]!;
    penalties.charge('enroll', 'kept', 0, policy); // another bucket: untouched
    for (let i = 0; i < 500; i++) penalties.charge('login', `10.0.${i >> 8}.${i & 255}`, 1000 + i, policy);
    const count = (bucket: string) =>
      Number(store.sql.prepare('SELECT count(*) AS n FROM failure_penalties WHERE bucket = ?').get(bucket)?.['n']);
    assert.ok(count('login') <= 50 + 10, `at most the bound and the charges between two caps (${count('login')})`);
    assert.ok(penalties.get('login', '10.0.1.243'), 'the newest source is kept');
    assert.equal(penalties.get('login', '10.0.0.0'), undefined, 'the oldest one is forgotten (forgiven)');
    assert.equal(count('enroll'), 1);
    store.pruneExpired(1000 + 500);
    assert.ok(count('login') <= 50, 'the periodic prune caps too');
  } finally {
    store.close();
  }
});

test('PostgreSQL: a charge does not wait for the writers lock held by another replica', (t) => {
  const location = testStore();
  if (location === ':memory:') return t.skip('PostgreSQL only (postgres-engine.test.ts runs it)');
  const a = CaStore.open(location);
  const b = CaStore.open(location);
  try {
    const started = Date.now();
    // A holds the writers' lock (a transaction of A's, open while B charges: one thread, so a charge that
    // waited for the lock would wait until lock_timeout and fail).
    a.transaction(() => {
      a.setMeta('held', 'yes');
      const p = b.penalties.charge('login', '10.9.9.9', 1000, POLICIES[0]!);
      assert.equal(p.level, 1);
    });
    assert.ok(Date.now() - started < 5000, `charged without waiting (${Date.now() - started} ms)`);
  } finally {
    b.close();
    a.close();
  }
});

test('PostgreSQL: two processes charging one source at once, 2 × 100 failures, count 200', async (t) => {
  const location = testStore();
  if (location === ':memory:') return t.skip('PostgreSQL only (postgres-engine.test.ts runs it)');
  const { store } = open(location); // migrated
  store.close();
  const policy: FailurePolicy = { burst: 1000, refillMs: 1e9, maxDelayMs: 1e9 }; // nothing decays, no cap reached
  const script = `
    const { CaStore } = await import(${JSON.stringify(new URL('../../lib/ca/store.js', import.meta.url).href)});
    const store = CaStore.open(process.argv[1]);
    for (let i = 0; i < 100; i++) store.penalties.charge('login', '10.1.1.1', 1000, ${JSON.stringify(policy)});
    store.close();`;
  const run = () => runModuleScript(script, location);
  assert.deepEqual(await Promise.all([run(), run()]), [0, 0]);
  const check = CaStore.open(location);
  try {
    assert.equal(check.penalties.get('login', '10.1.1.1')?.level, 200, 'no charge lost');
  } finally {
    check.close();
  }
});
