/**
 * lib/ca/changes.ts: the announcement of a committed change to other replicas is best-effort. A failed NOTIFY
 * (the store lost its connection after the commit) must not turn the committed change into a failed request:
 * raise() wakes this process's readers, reports the failure, and returns.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChangeSignal } from '../../lib/ca/changes.js';
import { GatewayError } from '../../lib/errors/codes.js';

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
