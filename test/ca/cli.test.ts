/** The `infisical-ca` command line: help, JSON output, admin subcommands, configuration precedence. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cli, cliJson } from './daemon-helpers.js';
import { TempDir } from './helpers.js';

const dir = new TempDir();
after(() => dir.remove());

test('--help for every command, --version', async () => {
  const top = await cli(['--help']);
  assert.equal(top.code, 0);
  const commands = [
    'init',
    'serve',
    'org',
    'identity',
    'token',
    'proxy',
    'gateway',
    'policy',
    'grant',
    'revoke',
    'audit',
  ];
  const helps = await Promise.all(commands.map((cmd) => cli([cmd, '--help'])));
  commands.forEach((cmd, i) => {
    assert.match(top.stdout, new RegExp(`infisical-ca ${cmd}`), cmd);
    assert.equal(helps[i]!.code, 0, `${cmd} --help`);
    assert.match(helps[i]!.stdout, /--json/, `${cmd} --help lists --json`);
  });
  assert.match((await cli(['--version'])).stdout, /^\d+\.\d+\.\d+/);
  const unknown = await cli(['org', 'list', '--no-such-flag']);
  assert.notEqual(unknown.code, 0);
  assert.notEqual((await cli([])).code, 0, 'a command is required');
});

test('admin subcommands on the local state directory, with --json', async () => {
  const state = join(dir.path, 'admin');
  const s = ['--state-dir', state];
  const init = await cliJson<{ adminClientSecret: string; apiFingerprint: string; trustDomain: string }>([
    'init',
    ...s,
  ]);
  assert.equal(init.trustDomain, 'infisical.local');
  assert.match(init.apiFingerprint, /^[0-9a-f]{64}$/);
  const twice = await cli(['init', ...s]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /E_CONFLICT/);

  await cliJson(['org', 'create', 'acme', ...s]);
  assert.deepEqual(
    (await cliJson<{ orgId: string }[]>(['org', 'list', ...s])).map((o) => o.orgId),
    ['acme'],
  );
  const id = await cliJson<{ clientSecret: string; role: string }>([
    'identity',
    'create',
    'acme',
    'boss',
    '--role',
    'org-admin',
    ...s,
  ]);
  assert.equal(id.role, 'org-admin');
  assert.ok(id.clientSecret.length >= 40);
  const ids = await cliJson<{ identityId: string }[]>(['identity', 'list', 'acme', ...s]);
  assert.deepEqual(
    ids.map((i) => i.identityId),
    ['boss'],
  );
  const rule = await cliJson<{ id: string }>([
    'policy',
    'add',
    'acme',
    '--id',
    'r1',
    '--subject',
    'identity:boss',
    '--gateway',
    'gw1',
    '--target',
    'db:5432',
    '--mode',
    'tcp',
    'http',
    ...s,
  ]);
  assert.equal(rule.id, 'r1');
  const bad = await cli([
    'policy',
    'add',
    'acme',
    '--subject',
    'nobody',
    '--gateway',
    'gw1',
    '--target',
    'db:5432',
    ...s,
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /E_REQUEST_INVALID/);
  assert.equal((await cliJson<unknown[]>(['policy', 'list', 'acme', ...s])).length, 1);
  await cliJson(['policy', 'delete', 'acme', 'r1', ...s]);
  const tok = await cliJson<{ token: string }>(['token', '--kind', 'proxy', '--subject', 'p1', ...s]);
  assert.match(tok.token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(await cliJson(['proxy', 'list', ...s]), []);
  assert.deepEqual(await cliJson(['gateway', 'list', 'acme', ...s]), []);
  assert.deepEqual(await cliJson(['grant', 'list', 'acme', ...s]), []);
  const rev = await cli(['revoke', 'identity', 'boss', '--org', 'acme', '--reason', 'left', ...s]);
  assert.equal(rev.code, 0, rev.stderr);
  assert.match(rev.stdout, /revoked identity boss of org acme/);
  const missing = await cli(['revoke', 'gateway', 'nope', '--org', 'acme', '--json', ...s]);
  assert.equal(missing.code, 1);
  assert.equal(JSON.parse(missing.stdout).code, 'E_NOT_FOUND');
  const audit = await cliJson<{ entries: { action: string }[] }>(['audit', ...s]);
  for (const action of ['init', 'org.create', 'identity.create', 'policy.add', 'revoke.identity']) {
    assert.ok(
      audit.entries.some((e) => e.action === action),
      action,
    );
  }
  await cliJson(['org', 'delete', 'acme', ...s]);
  assert.deepEqual(await cliJson(['org', 'list', ...s]), []);
});

test('configuration: flags > environment > config file', async () => {
  const a = join(dir.path, 'a');
  const b = join(dir.path, 'b');
  await cliJson(['init', '--state-dir', a]);
  await cliJson(['org', 'create', 'in-a', '--state-dir', a]);
  const conf = dir.write('ca.conf', `# test\nstate_directory = ${a}\n`);
  const fromFile = await cliJson<{ orgId: string }[]>(['org', 'list', '--config', conf]);
  assert.deepEqual(
    fromFile.map((o) => o.orgId),
    ['in-a'],
  );
  const envWins = await cli(['org', 'list', '--config', conf], { INFISICAL_CA_STATE_DIRECTORY: b });
  assert.notEqual(envWins.code, 0, 'the environment overrides the file (b holds no CA)');
  const flagWins = await cliJson<{ orgId: string }[]>(['org', 'list', '--config', conf, '--state-dir', a], {
    INFISICAL_CA_STATE_DIRECTORY: b,
  });
  assert.deepEqual(
    flagWins.map((o) => o.orgId),
    ['in-a'],
  );
  const badConf = dir.write('bad.conf', 'nonsense_key = 1\n');
  const refused = await cli(['org', 'list', '--config', badConf]);
  assert.equal(refused.code, 78);
  assert.match(refused.stderr, /E_CONFIG_INVALID.*unknown key "nonsense_key"/s);
  const mismatch = await cli(['org', 'list', '--state-dir', a, '--trust-domain', 'other.test']);
  assert.equal(mismatch.code, 78, 'the trust domain is fixed at init');
});
