import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeStatus, encodeStatus, MAX_STATUS_LINE } from '../../lib/protocol/relay.js';

test('status lines round-trip and keep the bytes after them', () => {
  const ok = Buffer.concat([encodeStatus({ ok: true }), Buffer.from([0x16, 0x03, 0x01])]);
  const d = decodeStatus(ok);
  assert.deepEqual(d?.status, { ok: true });
  assert.deepEqual([...(d?.rest ?? [])], [0x16, 0x03, 0x01]);
  const refused = decodeStatus(encodeStatus({ ok: false, code: 'E_GATEWAY_OFFLINE', message: 'gw1 has no tunnel' }));
  assert.deepEqual(refused?.status, { ok: false, code: 'E_GATEWAY_OFFLINE', message: 'gw1 has no tunnel' });
});

test('a partial line asks for more bytes', () => {
  assert.equal(decodeStatus(Buffer.from('{"ok":tr')), null);
});

test('malformed, oversized or unknown-code lines are refusals, never acceptance', () => {
  for (const line of ['nope\n', '[]\n', '{"ok":"true"}\n', '{"ok":1}\n']) {
    const d = decodeStatus(Buffer.from(line));
    assert.equal(d?.status.ok, false, line);
  }
  const long = decodeStatus(Buffer.alloc(MAX_STATUS_LINE, 0x41));
  assert.equal(long?.status.ok, false);
  const unknown = decodeStatus(Buffer.from('{"ok":false,"code":"E_MADE_UP","message":"x"}\n'));
  assert.equal(unknown?.status.ok === false && unknown.status.code, 'E_ROUTE_FORBIDDEN');
});
