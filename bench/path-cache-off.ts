/**
 * Turns THE verifier's path cache off in a process (lib/pki/path-cache.ts capacity 0): loaded with
 * `NODE_OPTIONS=--import=<this file>` into the daemons of the second deployment of `BENCH=setup` with
 * BENCH_SETUP_CACHE_AB, so the same run measures setup with and without the cache. The module is the daemons'
 * own (the same file URL), so this sets their cache.
 */
import { setPathCacheCapacity } from '../lib/pki/path-cache.js';

setPathCacheCapacity(0);
