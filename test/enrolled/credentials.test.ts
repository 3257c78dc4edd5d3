/**
 * lib/enrolled/credentials.ts: which credential `enroll` uses, and the warning for a token on the command line.
 * The real programs are driven in token-sources.test.ts; these are the choices between sources.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { enrollmentCredential, tokenOnCommandLineWarning } from '../../lib/enrolled/credentials.js';
import { GatewayError } from '../../lib/errors/codes.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';

const dir = mkdtempSync(join(tmpdir(), 'credentials-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const code = (c: string) => (err: unknown) => err instanceof GatewayError && err.code === c;
const none = { enrollment_token: undefined, enrollment_token_file: undefined, client_secret_file: undefined };
const login = { clientId: undefined, clientIdFlag: '--client-id' };

test('a token from the config, a file or standard input; both a token and a file is refused', () => {
  assert.deepEqual(enrollmentCredential({ ...none, enrollment_token: 'tok' }, login), { kind: 'token', token: 'tok' });
  const file = join(dir, 'token');
  writeFileSync(file, 'from-file\n', { mode: 0o600 });
  assert.deepEqual(enrollmentCredential({ ...none, enrollment_token_file: file }, login), {
    kind: 'token',
    token: 'from-file',
  });
  assert.deepEqual(
    enrollmentCredential(
      { ...none, enrollment_token_file: '-' },
      { ...login, readStdin: () => Buffer.from('from-stdin\n') },
    ),
    { kind: 'token', token: 'from-stdin' },
  );
  assert.throws(
    () => enrollmentCredential({ ...none, enrollment_token: 'tok', enrollment_token_file: file }, login),
    code('E_CONFIG_INVALID'),
  );
});

test('without a token: a client id and a private secret file, else a refusal naming what is missing', () => {
  assert.throws(
    () => enrollmentCredential(none, login),
    (err: unknown) => code('E_CONFIG_INVALID')(err) && /--token-file.*--client-id/.test(String(err)),
  );
  assert.throws(
    () => enrollmentCredential(none, { clientId: 'id', clientIdFlag: '--admin-client-id' }),
    (err: unknown) => code('E_CONFIG_INVALID')(err) && /--client-secret-file with --admin-client-id/.test(String(err)),
  );
  const secret = join(dir, 'secret');
  writeFileSync(secret, 's3cret\n', { mode: 0o600 });
  assert.deepEqual(
    enrollmentCredential({ ...none, client_secret_file: secret }, { clientId: 'id', clientIdFlag: '--client-id' }),
    { kind: 'login', clientId: 'id', clientSecret: 's3cret' },
  );
});

test('the warning is for a flag only, and names the daemon’s own variable', () => {
  const flag = { source: 'flag', flag: '--token' } as const;
  assert.match(tokenOnCommandLineWarning(gatewayConfigSchema, flag)!, /INFISICAL_GATEWAY_ENROLLMENT_TOKEN instead$/);
  assert.match(tokenOnCommandLineWarning(proxyConfigSchema, flag)!, /INFISICAL_PROXY_ENROLLMENT_TOKEN instead$/);
  for (const origin of [
    undefined,
    { source: 'env', name: 'INFISICAL_GATEWAY_ENROLLMENT_TOKEN' },
    { source: 'file', path: '/etc/infisical/gateway.conf', line: 3 },
  ] as const) {
    assert.equal(tokenOnCommandLineWarning(gatewayConfigSchema, origin), undefined);
  }
});
