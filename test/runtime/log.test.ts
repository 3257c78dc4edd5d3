import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../../lib/errors/codes.js';
import { type AuditRecord, createAudit, createLogger } from '../../lib/runtime/log.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, destination: { write: (s: string) => void lines.push(JSON.parse(s)) } };
}

test('log lines are JSON with daemon, version, level word and ISO time; level filters', () => {
  const { lines, destination } = capture();
  const log = createLogger({ daemon: 'proxy', version: '1.2.3', level: 'info', destination });
  log.debug('hidden');
  log.warn({ peer: '10.0.0.1' }, 'tunnel refused');
  assert.equal(lines.length, 1);
  const line = lines[0]!;
  assert.equal(line.daemon, 'proxy');
  assert.equal(line.version, '1.2.3');
  assert.equal(line.level, 'warn');
  assert.equal(line.msg, 'tunnel refused');
  assert.equal(line.peer, '10.0.0.1');
  assert.match(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

test('errors keep their stable code; secrets are redacted', () => {
  const { lines, destination } = capture();
  const log = createLogger({ daemon: 'ca', version: '0', level: 'trace', destination });
  log.error({ err: new GatewayError('E_CERT_EXPIRED', 'x'), token: 'tok-123', req: { password: 'pw' } }, 'refused');
  const line = lines[0]! as { err: { code: string }; token: string; req: { password: string } };
  assert.equal(line.err.code, 'E_CERT_EXPIRED');
  assert.equal(line.token, '[redacted]');
  assert.equal(line.req.password, '[redacted]');
  assert.ok(!JSON.stringify(lines).includes('tok-123'));
});

test('audit writes audit:true lines and hands the record to the sink', () => {
  const { lines, destination } = capture();
  const log = createLogger({ daemon: 'ca', version: '0', level: 'warn', destination });
  const stored: AuditRecord[] = [];
  const audit = createAudit(log, { sink: (r) => stored.push(r), now: () => new Date('2030-01-02T03:04:05Z') });
  audit('grant.issued', { grantId: 'g1', event: 'spoofed', audit: false });
  log.info('ordinary info lines are filtered at warn');
  assert.equal(lines.length, 1, 'audit lines are written even when log_level is warn');
  assert.equal(lines[0]!.audit, true);
  assert.equal(lines[0]!.event, 'grant.issued');
  assert.deepEqual(stored, [
    {
      event: 'grant.issued',
      time: '2030-01-02T03:04:05.000Z',
      fields: { grantId: 'g1', event: 'spoofed', audit: false },
    },
  ]);
  const info = capture();
  const audit2 = createAudit(
    createLogger({ daemon: 'ca', version: '0', level: 'info', destination: info.destination }),
  );
  audit2('stream.carried', { bytes: 10 });
  assert.equal(info.lines[0]!.audit, true);
  assert.equal(info.lines[0]!.event, 'stream.carried');
  assert.equal(info.lines[0]!.bytes, 10);
});

test('a failing audit sink is logged and rethrown', () => {
  const { lines, destination } = capture();
  const log = createLogger({ daemon: 'ca', version: '0', level: 'info', destination });
  const audit = createAudit(log, {
    sink: () => {
      throw new Error('disk full');
    },
  });
  assert.throws(() => audit('grant.issued', {}), /disk full/);
  assert.equal(lines[1]!.audit_sink_failed, true);
  assert.equal(lines[1]!.level, 'error');
});

test('the default destination is stdout, one JSON object per line', () => {
  const logModule = fileURLToPath(new URL('../../lib/runtime/log.js', import.meta.url));
  const script = `import { createLogger } from ${JSON.stringify(logModule)};
    const log = createLogger({ daemon: 'gateway', version: '9', level: 'info' });
    log.info('one'); log.info({ n: 2 }, 'two'); process.exit(0);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  const lines = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => [l.daemon, l.msg]),
    [
      ['gateway', 'one'],
      ['gateway', 'two'],
    ],
  );
});
