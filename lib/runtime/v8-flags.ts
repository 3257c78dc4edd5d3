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
import v8 from 'node:v8';

export const DAEMON_V8_FLAGS = ['--no-concurrent-array-buffer-sweeping'] as const;

for (const flag of DAEMON_V8_FLAGS) v8.setFlagsFromString(flag);
