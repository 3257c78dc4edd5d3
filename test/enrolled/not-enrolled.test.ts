/**
 * `serve` (and `renew`) of the gateway and the proxy, as processes, on a state directory that was never
 * enrolled: refused with "not enrolled: run `infisical-<role> enroll`", E_CONFIG_INVALID, exit 78, and the
 * directory left exactly as it was (nothing created: no database, no sealing key); a missing directory gets the
 * same answer (not a sealing-key error) and stays missing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cleanEnv, programPath } from '../lifecycle/process.js';

const root = mkdtempSync(join(tmpdir(), 'not-enrolled-'));
after(() => rmSync(root, { recursive: true, force: true }));

function run(program: 'gateway' | 'proxy', args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [programPath(program), ...args], { env: cleanEnv(), timeout: 30_000 }, (err, _o, e) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stderr: e }),
    );
  });
}

for (const role of ['gateway', 'proxy'] as const) {
  // Ports 0 so that nothing could collide even if serve got as far as listening.
  const serveArgs =
    role === 'gateway'
      ? ['serve', '--ops-listen', '127.0.0.1:0']
      : ['serve', '--ops-listen', '127.0.0.1:0', '--ssh-listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'];

  test(`${role}: serve and renew on a state directory never enrolled create nothing, exit 78`, async () => {
    const dir = join(root, `${role}-empty`);
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'notes.txt'), 'the operator put this here\n');
    for (const args of [serveArgs, ['renew']]) {
      const r = await run(role, [...args, '--state-dir', dir]);
      assert.equal(r.code, 78, `${role} ${args[0]}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`^infisical-${role}: E_CONFIG_INVALID: .*not enrolled: run \`infisical-${role} enroll\``),
      );
      assert.deepEqual(readdirSync(dir), ['notes.txt'], `${role} ${args[0]} left the directory as it was`);
    }
  });

  test(`${role}: serve on a missing state directory says "not enrolled" and creates nothing`, async () => {
    const dir = join(root, `${role}-missing`, 'state');
    const r = await run(role, [...serveArgs, '--state-dir', dir]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, new RegExp(`E_CONFIG_INVALID: .*not enrolled: run \`infisical-${role} enroll\``));
    assert.doesNotMatch(r.stderr, /E_SEALED_KEY|sealing/);
    assert.equal(existsSync(join(root, `${role}-missing`)), false, 'no directory was created');
  });
}
