import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes, GatewayError, refuse, unwrap } from '../../lib/errors/codes.js';

test('unwrap throws a GatewayError carrying the verdict code', () => {
  assert.throws(
    () => unwrap(refuse('E_CERT_EXPIRED', 'notAfter 2020-01-01')),
    (err: unknown) => err instanceof GatewayError && err.code === 'E_CERT_EXPIRED' && /2020-01-01/.test(err.message),
  );
});

test('every error code has a human message', () => {
  for (const [code, message] of Object.entries(ErrorCodes)) {
    assert.match(code, /^E_[A-Z_]+$/);
    assert.ok(message.length > 0);
  }
});
