/** The `infisical-ca` command line: help, JSON output, admin subcommands, configuration precedence. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { withAuthority } from '../../lib/ca/cli.js';
import type { CaConfig } from '../../lib/ca/serve.js';
import { unwrap } from '../../lib/errors/codes.js';
import { parseCertificate, pemBlocks } from '../../lib/pki/x509.js';
import { signRequestBytes } from '../../lib/protocol/api.js';
import { cli, cliJson } from './daemon-helpers.js';
import { clientKeys, TempDir } from './helpers.js';

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
    'migrate',
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
  assert.equal(bad.code, 2);
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
  await cliJson(['org', 'delete', 'acme', '--yes', ...s]);
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

test('proxy list and gateway list: current serial, its expiry, revoked, enrolled and renewed times', async () => {
  const state = join(dir.path, 'lists');
  const s = ['--state-dir', state];
  await cliJson(['init', ...s]);
  await cliJson(['org', 'create', 'acme', ...s]);
  // Enrollment and renewal go through the API in production; here the Authority on the same state directory.
  const config = { state_directory: state, token_ttl: 900_000, grant_ttl: 300_000, supersede_grace: 120_000 };
  const pk = clientKeys();
  const { gwSerial, renewedSerial, renewedNotAfter } = withAuthority(config as unknown as CaConfig, (ca) => {
    const gk = clientKeys();
    const gw = unwrap(
      ca.enrollGateway(ca.localAdmin(), {
        orgId: 'acme',
        gatewayId: 'gw1',
        csr: gk.csr,
        sshPublicKey: gk.sshPublicKey,
      }),
    );
    const px = unwrap(
      ca.enrollProxy(ca.localAdmin(), {
        scope: 'instance',
        proxyId: 'p1',
        hostnames: ['p1.example.test'],
        sshAddress: 'p1.example.test:22',
        tlsAddress: 'p1.example.test:443',
        csr: pk.csr,
        sshPublicKey: pk.sshPublicKey,
      }),
    );
    const next = clientKeys();
    const body = Buffer.from(
      JSON.stringify({
        csr: next.csr,
        sshPublicKey: next.sshPublicKey,
        timestamp: Math.floor(Date.now() / 1000),
        nonce: randomBytes(16).toString('base64url'),
      }),
    );
    const renewed = unwrap(
      ca.renewProxy({
        certificate: pemBlocks(px.tlsCertificateChain, 'CERTIFICATE')[0]!,
        signature: Buffer.from(signRequestBytes(body, pk.tlsKey), 'base64'),
        signed: body,
      }),
    );
    const leaf = parseCertificate(pemBlocks(renewed.tlsCertificateChain, 'CERTIFICATE')[0]!);
    return {
      gwSerial: parseCertificate(pemBlocks(gw.tlsCertificateChain, 'CERTIFICATE')[0]!).serialHex,
      renewedSerial: leaf.serialHex,
      renewedNotAfter: leaf.notAfter.toISOString(),
    };
  });
  await cliJson(['revoke', 'gateway', 'gw1', '--org', 'acme', ...s]);

  type Status = { currentSerial: string; notAfter: string; revoked: boolean; enrolledAt: string; renewedAt: string };
  const [p1] = await cliJson<(Status & { proxyId: string; scope: string })[]>(['proxy', 'list', ...s]);
  assert.equal(p1!.proxyId, 'p1');
  assert.equal(p1!.currentSerial, renewedSerial, 'the renewed certificate is current');
  assert.equal(p1!.notAfter, renewedNotAfter);
  assert.equal(p1!.revoked, false);
  assert.match(p1!.enrolledAt, /^\d{4}-\d\d-\d\dT/);
  assert.match(p1!.renewedAt, /^\d{4}-\d\d-\d\dT/);
  const [gw1] = await cliJson<(Status & { gatewayId: string; orgId: string })[]>(['gateway', 'list', 'acme', ...s]);
  assert.equal(gw1!.gatewayId, 'gw1');
  assert.equal(gw1!.currentSerial, gwSerial);
  assert.equal(gw1!.revoked, true);
  assert.equal(gw1!.renewedAt, null);

  const proxyText = (await cli(['proxy', 'list', ...s])).stdout.trim().split('\n');
  assert.deepEqual(proxyText[0]!.split('\t'), [
    'ID',
    'SCOPE',
    'SERIAL',
    'NOT_AFTER',
    'REVOKED',
    'ENROLLED',
    'RENEWED',
    'ONLINE',
    'LAST_SEEN',
    'VERSION',
    'HOSTNAMES',
  ]);
  assert.deepEqual(proxyText[1]!.split('\t').slice(0, 5), ['p1', 'instance', renewedSerial, renewedNotAfter, 'no']);
  const gatewayText = (await cli(['gateway', 'list', 'acme', ...s])).stdout.trim().split('\n');
  assert.equal(gatewayText[0], 'ID\tORG\tSERIAL\tNOT_AFTER\tREVOKED\tENROLLED\tRENEWED\tONLINE\tLAST_SEEN\tVERSION');
  // Never read the feed: offline, never seen, no version.
  assert.deepEqual(gatewayText[1]!.split('\t').slice(7), ['no', '-', '-']);
  assert.deepEqual(gatewayText[1]!.split('\t').slice(0, 5).concat(gatewayText[1]!.split('\t')[6]!), [
    'gw1',
    'acme',
    gwSerial,
    gw1!.notAfter,
    'yes',
    '-',
  ]);
});
