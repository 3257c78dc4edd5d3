/**
 * lib/ca/changes.ts: the announcement of a committed change to other replicas is best-effort. A failed NOTIFY
 * (the store lost its connection after the commit) must not turn the committed change into a failed request:
 * raise() wakes this process's readers, reports the failure, and returns. On PostgreSQL (postgres-engine.test.ts
 * runs this file there), a revocation whose NOTIFY is lost with the server out of reach still succeeds.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Authority } from '../../lib/ca/authority.js';
import { ChangeSignal } from '../../lib/ca/changes.js';
import { GatewayError, unwrap } from '../../lib/errors/codes.js';
import { createLogger } from '../../lib/runtime/log.js';
import { CA_TEST_POSTGRES, freshDatabase, replyCutter } from '../helpers/postgres.js';
import { CHEAP_SCRYPT, TD } from './helpers.js';

test('a failed announcement does not throw from raise(): local readers still wake, the failure is reported', async () => {
  const failures: unknown[] = [];
  const signal = new ChangeSignal(
    () => {
      throw new GatewayError('E_STORE_UNAVAILABLE', 'connection lost');
    },
    (err) => failures.push(err),
  );
  const woken = signal.next(10_000);
  assert.doesNotThrow(() => signal.raise());
  assert.equal(await woken, 'changed');
  assert.equal(failures.length, 1);
  assert.equal((failures[0] as GatewayError).code, 'E_STORE_UNAVAILABLE');
  assert.equal(signal.listenerCount, 0);
});

test('PostgreSQL: a revocation whose change notice is lost (server out of reach after the commit) succeeds', async (t) => {
  const server = process.env[CA_TEST_POSTGRES];
  if (!server) return t.skip('PostgreSQL only (postgres-engine.test.ts runs it)');
  const url = new URL(freshDatabase(server));
  const cutter = await replyCutter(Number(url.port));
  t.after(() => cutter.close());
  url.port = String(cutter.port);
  const lines: string[] = [];
  const logger = createLogger({
    daemon: 'ca',
    version: 'test',
    level: 'info',
    destination: { write: (l) => lines.push(l) },
  });
  const warnings = () => lines.filter((l) => l.includes('the notice to the other CA replicas failed'));
  const ca = Authority.open({
    db: url.toString(),
    sealKey: randomBytes(32),
    trustDomain: TD,
    limits: { scrypt: CHEAP_SCRYPT },
    logger,
  });
  try {
    unwrap(await ca.init());
    const admin = ca.localAdmin();
    unwrap(ca.createOrg(admin, 'acme'));
    unwrap(await ca.createIdentity(admin, 'acme', { identityId: 'bob', role: 'member' }));
    await cutter.cutAfter('NOTIFY');
    await cutter.refuse(true);
    const revoked = ca.revoke(admin, { kind: 'identity', orgId: 'acme', subject: 'bob' });
    await cutter.refuse(false);
    assert.ok(revoked.ok, `the committed revocation is reported as done: ${JSON.stringify(revoked)}`);
    assert.equal(ca.revocationsSince(admin, 0).entries.length, 1, 'and it is in the store');
    assert.equal(warnings().length, 1, 'the lost notice is logged');
  } finally {
    ca.close();
  }
});
