/**
 * The admin CLI refuses bad input at the edge, as a process: invalid ids (every command that takes one) with
 * E_REQUEST_INVALID, the id rule in the message and exit status 2, never E_INTERNAL from the database; a policy
 * rule for an identity that does not exist (E_NOT_FOUND); `org delete` without --yes and without a terminal.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ID_RULE } from '../../lib/pki/identity.js';
import { cli, cliJson } from './daemon-helpers.js';
import { TempDir } from './helpers.js';

const dir = new TempDir();
const state = join(dir.path, 'ca');
const s = ['--state-dir', state];
after(() => dir.remove());

before(async () => {
  await cliJson(['init', ...s]);
  await cliJson(['org', 'create', 'acme', ...s]);
  await cliJson(['identity', 'create', 'acme', 'boss', ...s]);
});

const BAD = ['Acme Corp', 'x/../y', ''];
const rule = ['--gateway', '*', '--target', 'db:5432'];

/** Each command that takes an id, with the bad id in one place; the label names the id the message must name. */
function cases(bad: string): [string, string[]][] {
  return [
    ['org id', ['org', 'create', bad]],
    ['org id', ['org', 'delete', bad, '--yes']],
    ['org id', ['identity', 'create', bad, 'app']],
    ['identity id', ['identity', 'create', 'acme', bad]],
    ['group name', ['identity', 'create', 'acme', 'app', '--group', bad]],
    ['org id', ['identity', 'list', bad]],
    ['org id', ['token', '--org', bad, '--kind', 'gateway', '--subject', 'gw1']],
    ['gateway id', ['token', '--org', 'acme', '--kind', 'gateway', '--subject', bad]],
    ['proxy id', ['token', '--kind', 'proxy', '--subject', bad]],
    ['org id', ['gateway', 'list', bad]],
    ['org id', ['grant', 'list', bad]],
    ['org id', ['policy', 'add', bad, '--subject', 'identity:boss', ...rule]],
    ['rule id', ['policy', 'add', 'acme', '--id', bad, '--subject', 'identity:boss', ...rule]],
    ['identity id', ['policy', 'add', 'acme', '--subject', `identity:${bad}`, ...rule]],
    ['group id', ['policy', 'add', 'acme', '--subject', `group:${bad}`, ...rule]],
    ['gateway id', ['policy', 'add', 'acme', '--subject', 'identity:boss', '--gateway', bad, '--target', 'db:5432']],
    ['org id', ['policy', 'list', bad]],
    ['org id', ['policy', 'delete', bad, 'r1']],
    ['rule id', ['policy', 'delete', 'acme', bad]],
    ['gateway id', ['revoke', 'gateway', bad, '--org', 'acme']],
    ['identity id', ['revoke', 'identity', bad, '--org', 'acme']],
    ['proxy id', ['revoke', 'proxy', bad]],
    ['grant id', ['revoke', 'grant', bad]],
    ['certificate serial', ['revoke', 'certificate', bad]],
    ['org id', ['revoke', 'identity', 'boss', '--org', bad]],
  ];
}

async function assertRefused(label: string, args: string[], bad: string): Promise<void> {
  const what = `infisical-ca ${args.map((a) => JSON.stringify(a)).join(' ')}`;
  const r = await cli([...args, ...s]);
  assert.equal(r.code, 2, `${what}: exit status (stderr ${r.stderr})`);
  assert.match(r.stderr, /^infisical-ca: E_REQUEST_INVALID: /, what);
  assert.ok(r.stderr.includes(`${label} ${JSON.stringify(bad)} is not a valid id`), `${what}: ${r.stderr}`);
  assert.ok(r.stderr.includes(ID_RULE), `${what}: the rule in the message: ${r.stderr}`);
  const json = await cli([...args, ...s, '--json']);
  assert.equal(json.code, 2, what);
  assert.equal((JSON.parse(json.stdout) as { code: string }).code, 'E_REQUEST_INVALID', what);
}

test('every command that takes an id refuses an invalid one: E_REQUEST_INVALID, the rule, exit 2', async () => {
  // Every command with "x/../y"; the other two bad ids on a command of each kind.
  const all: [string, string[], string][] = cases('x/../y').map(([l, a]) => [l, a, 'x/../y']);
  for (const bad of BAD.filter((b) => b !== 'x/../y')) {
    for (const i of [0, 3, 12, 19]) {
      const [label, args] = cases(bad)[i]!;
      all.push([label, args, bad]);
    }
  }
  // Four at a time: each is a process.
  for (let i = 0; i < all.length; i += 4) {
    await Promise.all(all.slice(i, i + 4).map(([label, args, bad]) => assertRefused(label, args, bad)));
  }
  // Nothing was written: still one org, one identity, no rule.
  assert.deepEqual(
    (await cliJson<{ orgId: string }[]>(['org', 'list', ...s])).map((o) => o.orgId),
    ['acme'],
  );
  assert.deepEqual(
    (await cliJson<{ identityId: string }[]>(['identity', 'list', 'acme', ...s])).map((i) => i.identityId),
    ['boss'],
  );
  assert.deepEqual(await cliJson(['policy', 'list', 'acme', ...s]), []);
});

test('a usage error is bad input too: exit 2', async () => {
  const r = await cli(['org', 'list', '--no-such-flag', ...s]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /E_REQUEST_INVALID: Unknown argument/);
});

test('policy add for an identity that does not exist: E_NOT_FOUND naming it, no rule added', async () => {
  const r = await cli(['policy', 'add', 'acme', '--subject', 'identity:ghost', ...rule, ...s]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^infisical-ca: E_NOT_FOUND: .*no identity ghost in org acme/);
  assert.deepEqual(await cliJson(['policy', 'list', 'acme', ...s]), []);
  // The same rule for the identity that exists is added; a group needs no identity.
  await cliJson(['policy', 'add', 'acme', '--subject', 'identity:boss', ...rule, ...s]);
  await cliJson(['policy', 'add', 'acme', '--subject', 'group:dba', ...rule, ...s]);
  assert.equal((await cliJson<unknown[]>(['policy', 'list', 'acme', ...s])).length, 2);
});

test('org delete needs --yes when there is no terminal to ask', async () => {
  await cliJson(['org', 'create', 'doomed', ...s]);
  const r = await cli(['org', 'delete', 'doomed', ...s]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^infisical-ca: E_REQUEST_INVALID: .*delete org doomed.*pass --yes/);
  const orgs = async () => (await cliJson<{ orgId: string }[]>(['org', 'list', ...s])).map((o) => o.orgId);
  assert.ok((await orgs()).includes('doomed'), 'still there');
  const yes = await cli(['org', 'delete', 'doomed', '--yes', ...s]);
  assert.equal(yes.code, 0, yes.stderr);
  assert.match(yes.stdout, /deleted org doomed/);
  assert.ok(!(await orgs()).includes('doomed'), 'deleted');
});
