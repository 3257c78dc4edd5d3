/**
 * `make fuzz`: every parser fuzz target for a set time. FUZZ_SECONDS is the total (default 600, shared evenly),
 * FUZZ_TARGETS a comma-separated subset, FUZZ_SEED the fast-check seed (default: random, printed, so a failing
 * run can be replayed). Exits 1 when any input failed.
 */
import { formatReport, fuzz, targetNames } from './runner.js';

const total = Number(process.env['FUZZ_SECONDS'] ?? 600);
const only = process.env['FUZZ_TARGETS']?.split(',').filter(Boolean);
const seed = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : Math.floor(Math.random() * 2 ** 31);
const names = targetNames(only);
const secondsEach = Math.max(1, total / names.length);

console.log(
  `fuzzing ${names.length} targets, ${secondsEach.toFixed(0)} s each, seed ${seed} (FUZZ_SEED=${seed} replays)`,
);
const reports = await fuzz({ secondsEach, seed, only: names, onReport: (r) => console.log(formatReport(r)) });
const runs = reports.reduce((n, r) => n + r.runs, 0);
const failures = reports.reduce((n, r) => n + r.failures, 0);
console.log(`total: ${runs} runs, ${failures} failures`);
process.exitCode = failures > 0 ? 1 : 0;
