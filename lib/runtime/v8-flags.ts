/**
 * V8 settings of the daemons that move streams' bytes (proxy, gateway, connect): imported first by their
 * entries, so that they hold from the start however the program runs (node, the standalone binary, a systemd
 * unit, which unsets NODE_OPTIONS anyway).
 *
 * `--no-concurrent-array-buffer-sweeping`: every TLS record, SSH packet and socket read is a new Buffer, whose
 * memory V8 counts as external. A young-generation GC frees them, but by default their memory is handed back
 * by a background task after the pause, so V8 still counts it when the next buffers are allocated; the count
 * overshoots its limit and starts a full (incremental) mark of the heap. Measured under bulk transfer
 * (docs/performance.md): 75–84 full marks in the gateway per run instead of 6, a third of its busy time,
 * about 11 CPU s/GiB over the three daemons instead of 7. Swept within the pause, the count drops at once.
 * It is a per-GC bookkeeping choice, not a heap size: memory is returned sooner, not later.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

export const DAEMON_V8_FLAGS = ['--no-concurrent-array-buffer-sweeping'] as const;

for (const flag of DAEMON_V8_FLAGS) v8.setFlagsFromString(flag);

/**
 * `--heap-growing-percent` while the heap is small: V8 sets the old generation's next limit only a little above
 * what survived the last full mark (27 MB for 11 MB in the proxy under bulk transfer) and starts the next
 * incremental mark while the room left is within reach of its 16 MB new space, so a full mark followed almost
 * every one (proxy: 21 in a 3 × 128 MiB run). With the growing factor fixed at up to 5 they stop (1, 0, 0 in
 * proxy, gateway, connect) and the three daemons spend a quarter to a third less CPU per GiB (docs/performance.md).
 * The factor is chosen so that the limit stays about HEADROOM above the heap's size (at most 5×), and handed
 * back to V8's own estimate (0) once the heap passes HEADROOM: no more than HEADROOM of extra heap at any size,
 * and none for large heaps (the scale bench's 10,000 tunnels). V8 reads the flag at each full GC.
 */
export const HEAP_HEADROOM = 64 * 2 ** 20;
const MAX_GROWING_PERCENT = 400;

/** The --heap-growing-percent for a heap of `used` bytes (0: V8's own estimate). */
export function heapGrowingPercent(used: number, headroom = HEAP_HEADROOM): number {
  const percent = Math.floor((headroom / Math.max(used, 1)) * 100);
  if (percent < 100) return 0;
  return Math.min(MAX_GROWING_PERCENT, Math.floor(percent / 50) * 50);
}

let growingPercent = -1;
/** Sets --heap-growing-percent for the current heap size (only when it changes). */
export function adjustHeapGrowing(): number {
  const percent = heapGrowingPercent(v8.getHeapStatistics().used_heap_size);
  if (percent !== growingPercent) {
    growingPercent = percent;
    v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  }
  return percent;
}

adjustHeapGrowing();
// After every GC, young ones included (many per second while a heap grows), rather than on a timer: a factor
// chosen for a heap a second old could be applied by a full GC to a heap grown since (12 MB then, 60 MB now:
// a limit of 300 MB, not 64 MB above the heap).
new PerformanceObserver(() => adjustHeapGrowing()).observe({ entryTypes: ['gc'] });
