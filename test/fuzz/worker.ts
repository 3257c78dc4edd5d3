/** Runs one fuzz target inside a worker thread and posts its report; the current input is kept in shared memory. */
import { parentPort, workerData } from 'node:worker_threads';
import { HEADER_BYTES, type InputProbe, runTarget, type WorkerJob } from './harness.js';
import { targetNamed } from './targets/index.js';

const job = workerData as WorkerJob;
const header = new Int32Array(job.shared, 0, 3);
const text = Buffer.from(job.shared, HEADER_BYTES);

const probe: InputProbe = {
  begin(describe) {
    const written = text.write(describe(), 'utf8');
    Atomics.store(header, 2, written);
    Atomics.add(header, 1, 1);
    Atomics.store(header, 0, 1);
  },
  end() {
    Atomics.store(header, 0, 0);
  },
};

const report = runTarget(targetNamed(job.target), job.seeds, {
  seconds: job.seconds,
  seed: job.seed,
  slowMs: job.slowMs,
  probe,
});
parentPort?.postMessage(report);
