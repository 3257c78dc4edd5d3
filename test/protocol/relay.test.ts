import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeStatus, encodeStatus, MAX_STATUS_LINE, MODE_ALPNS, modeHasStatus } from '../../lib/protocol/relay.js';

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

test("the gateway's lines use the same codec; what cannot be read is a close, never acceptance", () => {
  const refused = decodeStatus(
    encodeStatus({ ok: false, code: 'E_TARGET_NOT_ALLOWED', message: 'db:5432 (set allow_ports there)' }),
    'gateway',
  );
  assert.deepEqual(refused?.status, {
    ok: false,
    code: 'E_TARGET_NOT_ALLOWED',
    message: 'db:5432 (set allow_ports there)',
  });
  const unknown = decodeStatus(Buffer.from('{"ok":false,"code":"E_FROM_THE_FUTURE","message":"x"}\n'), 'gateway');
  assert.deepEqual(unknown?.status, { ok: false, code: 'E_STREAM_CLOSED', message: 'E_FROM_THE_FUTURE: x' });
  const bad = decodeStatus(Buffer.from('HTTP/1.1 200 OK\r\n'), 'gateway');
  assert.equal(bad?.status.ok === false && bad.status.code, 'E_STREAM_CLOSED');
  assert.match(bad?.status.ok === false ? bad.status.message : '', /^gateway sent a malformed status/);
});

test('an encoded line never exceeds MAX_STATUS_LINE, however the message escapes', () => {
  const line = encodeStatus({ ok: false, code: 'E_LIMIT', message: '"\\\n'.repeat(400) });
  assert.ok(line.length <= MAX_STATUS_LINE, `${line.length} bytes`);
  assert.equal(decodeStatus(line)?.status.ok, false);
  const wide = encodeStatus({ ok: false, code: 'E_LIMIT', message: '€'.repeat(400) });
  assert.ok(wide.length <= MAX_STATUS_LINE, `${wide.length} bytes`);
});

test('status lines inside the inner TLS in tcp, ping and health; http speaks HTTP', () => {
  assert.deepEqual(
    MODE_ALPNS.filter((m) => modeHasStatus(m)),
    ['tcp', 'ping', 'health'],
  );
});
