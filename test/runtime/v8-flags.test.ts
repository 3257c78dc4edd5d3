/**
 * The daemons' V8 settings (lib/runtime/v8-flags.ts) take effect when set at run time, and every daemon that
 * moves bytes loads them before anything else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = fileURLToPath(import.meta.url); // build/test/runtime/v8-flags.test.js
const MODULE = resolve(HERE, '../../../lib/runtime/v8-flags.js');
const DAEMONS = resolve(HERE, '../../../daemons');

test('array buffers are swept within the young-generation GC once the module is loaded', () => {
  // 32 MiB of buffers dropped, then a minor GC: swept in the pause, none is counted after it. Without the
  // setting a background task frees them later, and the count right after the GC often still holds them.
  const script = `
    await import(${JSON.stringify(pathToFileURL(MODULE).href)});
    const after = [];
    for (let round = 0; round < 8; round++) {
      let held = [];
      for (let i = 0; i < 1024; i++) held.push(Buffer.allocUnsafeSlow(32 * 1024));
      held = null;
      globalThis.gc({ type: 'minor' });
      after.push(process.memoryUsage().arrayBuffers);
    }
    process.stdout.write(JSON.stringify(after));`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  const after = JSON.parse(out) as number[];
  for (const bytes of after) assert.ok(bytes < 4 * 2 ** 20, `still counted after the GC: ${after.join(', ')} bytes`);
});

test('proxy, gateway and connect load the settings first', () => {
  for (const daemon of ['proxy', 'gateway', 'connect']) {
    const source = readFileSync(resolve(DAEMONS, `${daemon}.js`), 'utf8');
    const first = /^import\s[^;]*;/m.exec(source)?.[0];
    assert.equal(first, "import '../lib/runtime/v8-flags.js';", daemon);
  }
});

test('the heap growing factor: up to 5 while the heap is small, about 64 MB of room, V8 own above', async () => {
  const { heapGrowingPercent, HEAP_HEADROOM } = (await import(pathToFileURL(MODULE).href)) as {
    heapGrowingPercent: (used: number) => number;
    HEAP_HEADROOM: number;
  };
  const MB = 2 ** 20;
  assert.equal(HEAP_HEADROOM, 64 * MB);
  assert.equal(heapGrowingPercent(8 * MB), 400);
  assert.equal(heapGrowingPercent(12 * MB), 400);
  assert.equal(heapGrowingPercent(20 * MB), 300);
  assert.equal(heapGrowingPercent(32 * MB), 200);
  assert.equal(heapGrowingPercent(64 * MB), 100);
  assert.equal(heapGrowingPercent(65 * MB), 0);
  assert.equal(heapGrowingPercent(300 * MB), 0);
  // the extra room above the heap never passes the headroom
  for (let used = MB; used < 200 * MB; used += MB / 2) {
    const p = heapGrowingPercent(used);
    assert.ok((used * p) / 100 <= HEAP_HEADROOM, `${used} bytes: ${p} %`);
  }
});

test('loading the module sets the growing factor for the current heap', () => {
  const script = `
    import v8 from 'node:v8';
    const set = v8.setFlagsFromString;
    const flags = [];
    v8.setFlagsFromString = (f) => { flags.push(f); return set(f); };
    await import(${JSON.stringify(pathToFileURL(MODULE).href)});
    process.stdout.write(JSON.stringify(flags));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  const flags = JSON.parse(out) as string[];
  assert.ok(flags.includes('--no-concurrent-array-buffer-sweeping'), flags.join(' '));
  assert.ok(flags.includes('--heap-growing-percent=400'), flags.join(' '));
});
