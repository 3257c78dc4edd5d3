/**
 * A CPU profile of a whole process, for the daemons of `BENCH=datapath` (`node --cpu-prof` is refused in
 * NODE_OPTIONS, and the test harness spawns the daemons itself): loaded with
 * `NODE_OPTIONS=--import=<this file>`, it starts V8's sampling profiler and, at exit, writes
 * <BENCH_CPU_PROFILE_DIR>/<program>-<command>-<pid>.cpuprofile (Chrome DevTools and speedscope read it).
 * The in-process inspector session answers synchronously, so the profile is written inside 'exit'.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { basename, join } from 'node:path';

const dir = process.env['BENCH_CPU_PROFILE_DIR'];
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.once('exit', () => {
    session.post('Profiler.stop', (err, r) => {
      if (err) return;
      const name = `${basename(process.argv[1] ?? 'node', '.js')}-${process.argv[2] ?? ''}-${process.pid}`;
      writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(r.profile));
    });
  });
}
