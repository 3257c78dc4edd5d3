/**
 * lib/runtime/secret-file.ts, the one judge of secret files: any group or other bit refused with
 * E_SECRET_FILE_MODE and the chmod that fixes it; "-" reads standard input; empty, missing and oversized
 * files refused with E_CONFIG_INVALID.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GatewayError } from '../../lib/errors/codes.js';
import { readSecretFile, secretFileModeProblem } from '../../lib/runtime/secret-file.js';

const dir = mkdtempSync(join(tmpdir(), 'secret-file-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const code = (c: string) => (err: unknown) => err instanceof GatewayError && err.code === c;

test('every mode with a group or other bit is refused; 0600, 0400 and 0700 are not', () => {
  for (const mode of [0o600, 0o400, 0o700, 0o100600]) {
    assert.equal(secretFileModeProblem('/x', mode), undefined, mode.toString(8));
  }
  for (const mode of [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o777, 0o100644]) {
    const problem = secretFileModeProblem('/etc/token', mode);
    assert.ok(problem, mode.toString(8));
    assert.match(problem, new RegExp(`^/etc/token has mode 0${(mode & 0o777).toString(8)} `));
    assert.match(problem, /fix it with: chmod 600 \/etc\/token$/);
  }
  assert.match(secretFileModeProblem("/tmp/my token's", 0o644)!, /chmod 600 '\/tmp\/my token'\\''s'$/);
});

test('a private file is read and trimmed; a loose one is refused before it is read', () => {
  const file = join(dir, 'token');
  writeFileSync(file, '  abc-123\n', { mode: 0o600 });
  assert.equal(readSecretFile(file, { what: '--token-file' }), 'abc-123');
  chmodSync(file, 0o644);
  assert.throws(
    () => readSecretFile(file, { what: '--token-file' }),
    (err: unknown) =>
      code('E_SECRET_FILE_MODE')(err) &&
      (err as Error).message.includes(`${file} has mode 0644`) &&
      (err as Error).message.endsWith(`chmod 600 ${file}`),
  );
  chmodSync(file, 0o640);
  assert.throws(() => readSecretFile(file, { what: '--token-file' }), code('E_SECRET_FILE_MODE'));
});

test('"-" reads standard input; empty, missing, directory and oversized are E_CONFIG_INVALID', () => {
  assert.equal(readSecretFile('-', { what: '--token-file', readStdin: () => Buffer.from('tok\n') }), 'tok');
  assert.throws(
    () => readSecretFile('-', { what: '--token-file', readStdin: () => Buffer.alloc(0) }),
    (err: unknown) => code('E_CONFIG_INVALID')(err) && /standard input\): empty/.test(String(err)),
  );
  const empty = join(dir, 'empty');
  writeFileSync(empty, '\n', { mode: 0o600 });
  assert.throws(() => readSecretFile(empty, { what: '--token-file' }), code('E_CONFIG_INVALID'));
  assert.throws(
    () => readSecretFile(join(dir, 'absent'), { what: '--token-file' }),
    (err: unknown) => code('E_CONFIG_INVALID')(err) && /cannot open \(ENOENT\)/.test(String(err)),
  );
  assert.throws(() => readSecretFile(dir, { what: '--token-file' }), code('E_CONFIG_INVALID'));
  const big = join(dir, 'big');
  writeFileSync(big, Buffer.alloc(65 * 1024, 0x61), { mode: 0o600 });
  assert.throws(() => readSecretFile(big, { what: '--token-file' }), code('E_CONFIG_INVALID'));
});
