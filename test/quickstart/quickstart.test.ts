/**
 * Runs `make run`'s program as a new user would (fresh state folder, every daemon its own process) and checks
 * that its connection through the tunnel worked; then runs it again on the same state (the CA is initialised
 * once, enrollments are kept).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const QUICKSTART = resolve(fileURLToPath(import.meta.url), '../../../daemons/quickstart.js');

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

    const again = runQuickstart(state, portBase);
    assert.equal(again.status, 0, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stdout, /reusing /);
    assert.match(again.stdout, /QUICKSTART OK/);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});
