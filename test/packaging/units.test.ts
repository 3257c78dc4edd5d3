/**
 * The systemd units as files: `systemd-analyze verify` prints nothing (it exits 0 on unknown keys, so any
 * output fails), `systemd-analyze security` rates each unit at exposure ≤ 2.0, and the settings the daemons
 * rely on are there. The same units are booted for real in packages.test.ts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { run } from './container.js';

const ROOT = join(import.meta.dirname, '../../..');
const DAEMONS = ['ca', 'proxy', 'gateway'] as const;
const unitText = (d: string) => readFileSync(join(ROOT, 'systemd', `infisical-${d}.service`), 'utf8');

/** `key=value` lines of the unit (later lines win, like systemd for single-valued keys). */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

const analyze = existsSync('/usr/bin/systemd-analyze') || existsSync('/bin/systemd-analyze');

describe('systemd units', { skip: analyze ? false : 'systemd-analyze missing (apt-get install systemd)' }, () => {
  // verify checks ExecStart= binaries exist: point the copies at stand-ins, nothing else changes.
  const dir = mkdtempSync(join(tmpdir(), 'infisical-units-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const copies = DAEMONS.map((d) => {
    const stub = join(dir, `infisical-${d}`);
    writeFileSync(stub, '#!/bin/sh\n');
    chmodSync(stub, 0o755);
    const unit = join(dir, `infisical-${d}.service`);
    writeFileSync(unit, unitText(d).replaceAll(`/usr/bin/infisical-${d}`, stub));
    return unit;
  });

  it('systemd-analyze verify prints nothing for any unit', async () => {
    const r = await run('systemd-analyze', ['verify', ...copies]);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'verify reported problems');
    assert.equal(r.code, 0);
  });

  it('systemd-analyze security: exposure ≤ 2.0 for each unit', async () => {
    const scores: Record<string, number> = {};
    for (const [i, d] of DAEMONS.entries()) {
      const r = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', copies[i]!]);
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
      assert.ok(m, `no exposure level in:\n${r.stdout}${r.stderr}`);
      scores[`infisical-${d}`] = Number(m[1]);
    }
    console.log(`# exposure: ${JSON.stringify(scores)}`);
    for (const [unit, score] of Object.entries(scores)) assert.ok(score <= 2.0, `${unit}: exposure ${score} > 2.0`);
  });

  for (const d of DAEMONS) {
    it(`infisical-${d}: notify, watchdog, directories and the sandbox the daemon needs`, () => {
      const s = settings(unitText(d));
      const one = (key: string) => s.get(key)?.at(-1);
      assert.equal(one('Type'), 'notify');
      assert.equal(one('NotifyAccess'), 'main');
      assert.equal(one('ExecStart'), `/usr/bin/infisical-${d} serve`);
      assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
      assert.equal(one('Restart'), 'on-failure');
      assert.match(one('WatchdogSec') ?? '', /^\d+s$/);
      assert.equal(one('User'), `infisical-${d}`);
      assert.equal(one('StateDirectory'), `infisical-${d}`);
      assert.equal(one('StateDirectoryMode'), '0700');
      assert.equal(one('CacheDirectory'), `infisical-${d}`);
      assert.equal(one('ConfigurationDirectory'), 'infisical');
      assert.equal(one('UnsetEnvironment'), 'NODE_OPTIONS');
      assert.equal(one('UMask'), '0077');
      assert.equal(one('CapabilityBoundingSet'), '');
      assert.equal(one('ProtectSystem'), 'strict');
      // Node dies under these: they must never come back.
      assert.equal(s.has('MemoryDenyWriteExecute'), false);
      assert.ok(s.get('SystemCallFilter')?.includes('@system-service @pkey'));
      // The sysusers.d file creates the user the unit runs as.
      const sysusers = readFileSync(join(ROOT, 'systemd/sysusers.d', `infisical-${d}.conf`), 'utf8');
      assert.match(sysusers, new RegExp(`^u infisical-${d} - `, 'm'));
    });
  }
});
