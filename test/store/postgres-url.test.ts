/**
 * PostgreSQL URLs read as libpq reads them (lib/store/postgres-url.ts): the credentials run to the first '@'
 * before any '/', whatever they hold; the query is kept as written; messages never show a password.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  postgresUrlProblem,
  redactLibpqMessage,
  redactUrl,
  withConnectionDefaults,
} from '../../lib/store/postgres-url.js';

const SECRETS = ['pa?ss', 'p#w', 's3cr:et', 'pw/x', 'hunter2', '50%off'];
const shown = (text: string): string[] =>
  SECRETS.filter((s) => text.includes(s) || text.includes(encodeURIComponent(s)));

test('a password holding ?, #, : or / is never shown', () => {
  for (const url of [
    'postgres://ca:pa?ss@db/x',
    'postgres://ca:p#w@db:5432/x?sslmode=require',
    'postgresql://ca:s3cr:et@a:5432,b:5433/x?target_session_attrs=read-write',
    'postgres://ca:pw/x@db/x',
    'postgres://ca@db/x?password=hunter2',
    'postgres://ca@db/x?pass%77ord=hunter2',
    'postgres://ca@db/x?application_name=a%20b&sslpassword=hunter2',
    'postgres://db/d@b?password=hunter2',
    'postgres://ca:p/w@db/x?sslpassword=hunter2',
    'postgres://ca@db/x?PASSWORD=hunter2',
    'postgres://ca:50%off@db/x',
    'postgres://ca@db/x?password=50%off',
  ]) {
    assert.deepEqual(shown(redactUrl(url)), [], `${redactUrl(url)}`);
    assert.deepEqual(shown(postgresUrlProblem(url) ?? ''), [], `${postgresUrlProblem(url)}`);
  }
  assert.equal(redactUrl('postgres://ca:pa?ss@db/x'), 'postgres://ca:***@db/x');
  assert.equal(postgresUrlProblem('postgres://ca:pa?ss@db/x'), undefined, 'libpq reads it: so do we');
  assert.equal(redactUrl('postgres://ca:pw/x@db/x'), 'postgres://***@db/x');
});

test('connection defaults are added to the query as written, never re-encoded, never twice', () => {
  const url = withConnectionDefaults('postgres://ca:pa?ss@db/x?options=-c%20search_path%3Dca&connect_timeout=3');
  assert.ok(url.startsWith('postgres://ca:pa?ss@db/x?options=-c%20search_path%3Dca&connect_timeout=3&'), url);
  assert.equal(url.match(/connect_timeout=/g)?.length, 1);
  assert.match(url, /&keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3$/);
  assert.equal(
    withConnectionDefaults('postgres://a:5432,b:5433/x'),
    'postgres://a:5432,b:5433/x?connect_timeout=10&keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3',
  );
});

test('hosts: several with ports, IPv6 in brackets; a bad one refused without being quoted', () => {
  assert.equal(postgresUrlProblem('postgres://ca@[::1]:5432,db-b:5433/x'), undefined);
  assert.match(postgresUrlProblem('postgres://ca@db:99999/x') ?? '', /port 99999 is out of range/);
  const bad = postgresUrlProblem('postgres://ca@d[b/x');
  assert.ok(bad && !bad.includes('d[b'), bad);
  assert.match(postgresUrlProblem('mysql://x') ?? '', /expected a postgres:\/\/ URL/);
});

test("a '%' that starts no escape is refused before libpq quotes it; libpq's own messages are cleaned", () => {
  assert.match(postgresUrlProblem('postgres://ca:50%off@db/x') ?? '', /must start a %XX escape/);
  assert.match(postgresUrlProblem('postgres://ca@db/x?password=50%zz') ?? '', /must start a %XX escape/);
  assert.equal(postgresUrlProblem('postgres://ca:50%25off@db/x'), undefined);
  assert.equal(postgresUrlProblem('postgres://ca@[fe80::1%25eth0]:5432/x'), undefined, 'an IPv6 zone, as libpq');
  // Texts libpq gives for URLs it cannot read (measured with the installed libpq).
  const url = 'postgres://ca:50%off@[::1/x';
  for (const message of [
    'invalid percent-encoded token: "50%off"',
    `end of string reached when looking for matching "]" in IPv6 host address in URI: "${url}"`,
  ]) {
    const shown = redactLibpqMessage(message, url);
    assert.ok(!shown.includes('50%off') && !shown.includes('off'), shown);
  }
  const refusedAt = 'connection to server at "db" (10.0.0.1), port 5432 failed: FATAL:  password authentication failed';
  assert.equal(redactLibpqMessage(refusedAt, 'postgres://ca:pw@db/x'), refusedAt, 'other messages kept');
  assert.equal(redactLibpqMessage('echo s3cret and s3cret', 'postgres://ca:s3cret@db/x'), 'echo *** and ***');
});
