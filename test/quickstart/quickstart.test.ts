/**
 * Runs `make run`'s program as a new user would (fresh state folder, every daemon its own process) and checks
 * that its connection through the tunnel worked; then runs it again on the same state (the CA is initialised
 * once, enrollments are kept).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const QUICKSTART = resolve(fileURLToPath(import.meta.url), '../../../daemons/quickstart.js');
const CA = resolve(fileURLToPath(import.meta.url), '../../../daemons/ca.js');

function runQuickstart(state: string, portBase: number) {
  return spawnSync(process.execPath, [QUICKSTART, '--once', '--state', state, '--port-base', String(portBase)], {
    encoding: 'utf8',
    timeout: 180_000,
  });
}

test('the quickstart brings up CA, proxy, gateway and resource, and connects through the tunnel', () => {
  const state = mkdtempSync(join(tmpdir(), 'quickstart-'));
  // below Linux's ephemeral range (32768+), so no outgoing connection of another test can hold one of our ports
  const portBase = 20000 + Math.floor(Math.random() * 12000);
  try {
    const first = runQuickstart(state, portBase);
    assert.equal(first.status, 0, `${first.stdout}\n${first.stderr}`);
    assert.match(first.stdout, /GET \/ through the tunnel → 200 hello from the private network/);
    assert.match(first.stdout, /QUICKSTART OK/);
    // the slow first-run steps say what they do
    assert.match(first.stdout, /\[1\/5\] CA on .*\n {2}first run: creating the CA, org demo, machine identity app/);
    assert.match(first.stdout, /\[2\/5\] .*\n {2}first run: enrolling proxy-1 and gw-demo with the CA…/);

    const again = runQuickstart(state, portBase);
    assert.equal(again.status, 0, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stdout, /reusing /);
    assert.doesNotMatch(again.stdout, /first run/);
    assert.match(again.stdout, /QUICKSTART OK/);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

/** Runs the quickstart with --once, its ports from INFISICAL_QUICKSTART_PORT_BASE; times each output line. */
function runTimed(
  state: string,
  portBase: number,
): Promise<{ status: number | null; out: string; at: Map<string, number> }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('INFISICAL_') && v) env[k] = v;
  env['INFISICAL_QUICKSTART_PORT_BASE'] = String(portBase);
  const child = spawn(process.execPath, [QUICKSTART, '--once', '--state', state], { env });
  const at = new Map<string, number>();
  let out = '';
  const note = (d: Buffer) => {
    out += d.toString();
    for (const line of out.split('\n')) if (!at.has(line)) at.set(line, Date.now());
  };
  child.stdout.on('data', note);
  child.stderr.on('data', note);
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  return new Promise((resolve) =>
    child.on('close', (status) => {
      clearTimeout(timer);
      at.set('(exit)', Date.now());
      resolve({ status, out, at });
    }),
  );
}

test('a revoked quickstart gateway is reported at once, with how to start clean; INFISICAL_QUICKSTART_PORT_BASE sets the ports', async () => {
  const state = mkdtempSync(join(tmpdir(), 'quickstart-revoked-'));
  const portBase = 20000 + Math.floor(Math.random() * 12000);
  try {
    const first = await runTimed(state, portBase);
    assert.equal(first.status, 0, first.out);
    assert.match(first.out, new RegExp(`CA on https://127\\.0\\.0\\.1:${portBase + 43}\\n`));

    const revoke = spawnSync(
      process.execPath,
      [CA, 'revoke', 'gateway', 'gw-demo', '--org', 'demo', '--state-dir', join(state, 'ca'), '--reason', 'test'],
      { encoding: 'utf8' },
    );
    assert.equal(revoke.status, 0, revoke.stderr);

    // The gateway learns it from the feed once started (readyz 503 E_SUBJECT_REVOKED), then remembers it
    // (a later start exits 77): both are reported at once, not after the 30 s readiness wait.
    for (const run of ['revoked while running', 'revoked at start']) {
      const again = await runTimed(state, portBase);
      assert.notEqual(again.status, 0, `${run}: ${again.out}`);
      assert.match(again.out, /quickstart failed: the quickstart's gateway was revoked \(/, run);
      assert.ok(again.out.includes(`rm -rf ${state} && node `), `${run}: ${again.out}`);
      const step4 = [...again.at].find(([line]) => line.startsWith('[4/5]'))?.[1];
      assert.ok(step4, again.out);
      const waited = again.at.get('(exit)')! - step4;
      assert.ok(waited < 20_000, `${run}: ${waited} ms from starting the gateway to the exit (the wait was 30 s)`);
    }
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});
