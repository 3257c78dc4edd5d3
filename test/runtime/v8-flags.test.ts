/**
 * The daemons' V8 settings (lib/runtime/v8-flags.ts) take effect when set at run time, and every daemon that
 * moves bytes loads them before anything else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = fileURLToPath(import.meta.url); // build/test/runtime/v8-flags.test.js
const MODULE = resolve(HERE, '../../../lib/runtime/v8-flags.js');
const DAEMONS = resolve(HERE, '../../../daemons');

/**
 * V8's own flag list with the values the flags hold NOW: `v8.setFlagsFromString('--help')` prints every flag,
 * its "default:" column being the current value (V8 prints the variable), then exits the process. A read-back
 * of the flag itself, not a GC timing: the same answer every run.
 */
const PRINT_FLAGS = "v8.setFlagsFromString('--help');";

/** The value V8 holds for `name` in the flag list `out`: "--no-concurrent-array-buffer-sweeping", "--x=400". */
function flagValue(out: string, name: string): string {
  const m = new RegExp(`^  --${name} \\(.*\\)\\n\\s+type: \\S+\\s+default: (\\S+)$`, 'm').exec(out);
  assert.ok(m, `--${name} is not in V8's flag list`);
  return m[1]!;
}

/**
 * Runs node with `args`, without NODE_OPTIONS (as the systemd units run it: flags come from the program only),
 * its stdout a file: V8 prints the flag list (~100 KB) with plain writes, which a pipe that node made
 * non-blocking would cut short when full.
 */
function node(args: string[]): string {
  const { NODE_OPTIONS: _, ...env } = process.env;
  const dir = mkdtempSync(join(tmpdir(), 'v8-flags-'));
  try {
    const fd = openSync(join(dir, 'stdout'), 'w+');
    try {
      execFileSync(process.execPath, args, { env, stdio: ['ignore', fd, 'pipe'] });
    } finally {
      closeSync(fd);
    }
    return readFileSync(join(dir, 'stdout'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('array buffers are swept within the young-generation GC once the module is loaded', () => {
  // 32 MiB of buffers dropped, then a minor GC: swept in the pause, none is counted after it (without the flag a
  // background task frees them later: counted or not after the pause is a race, so the flag is read back too).
  const script = `
    import v8 from 'node:v8';
    await import(${JSON.stringify(pathToFileURL(MODULE).href)});
    const after = [];
    for (let round = 0; round < 8; round++) {
      let held = [];
      for (let i = 0; i < 1024; i++) held.push(Buffer.allocUnsafeSlow(32 * 1024));
      held = null;
      globalThis.gc({ type: 'minor' });
      after.push(process.memoryUsage().arrayBuffers);
    }
    process.stdout.write(JSON.stringify(after) + '\\n');
    ${PRINT_FLAGS}`;
  const out = node(['--expose-gc', '--input-type=module', '-e', script]);
  assert.equal(flagValue(out, 'concurrent-array-buffer-sweeping'), '--no-concurrent-array-buffer-sweeping');
  const after = JSON.parse(out.slice(0, out.indexOf('\n'))) as number[];
  for (const bytes of after) assert.ok(bytes < 4 * 2 ** 20, `still counted after the GC: ${after.join(', ')} bytes`);
});

test('proxy, gateway and connect run with the flags: read back from V8 in each daemon started through its CLI', () => {
  // Read at exit, after the daemon's own code ran (here its --help): whatever it imported has set its flags.
  const readBack = `data:text/javascript,import v8 from 'node:v8'; process.on('exit', () => { ${PRINT_FLAGS} });`;
  const plain = node(['--import', readBack, '-e', '0']);
  assert.equal(flagValue(plain, 'concurrent-array-buffer-sweeping'), '--concurrent-array-buffer-sweeping', 'node');
  assert.equal(flagValue(plain, 'heap-growing-percent'), '--heap-growing-percent=0', "node's own");
  for (const daemon of ['proxy', 'gateway', 'connect']) {
    const out = node(['--import', readBack, resolve(DAEMONS, `${daemon}.js`), '--help']);
    assert.equal(flagValue(out, 'concurrent-array-buffer-sweeping'), '--no-concurrent-array-buffer-sweeping', daemon);
    assert.match(flagValue(out, 'heap-growing-percent'), /^--heap-growing-percent=[1-9]\d*$/, daemon);
  }
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
