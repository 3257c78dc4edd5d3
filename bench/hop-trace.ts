/**
 * Where a stream's time goes, hop by hop: loaded with `NODE_OPTIONS=--import=<this file>` and BENCH_HOP_TRACE_DIR
 * set (bench/hops.ts does both), a process stamps every socket write, every chunk pushed into a socket (for a TLS
 * socket: decrypted), every accept and every connect with `process.hrtime` (CLOCK_MONOTONIC: one clock for every
 * process on the machine), with the socket's ports, so that the timelines of all processes can be merged by port.
 * Written as JSON lines to <dir>/<program>-<command>-<pid>.jsonl at exit. The stamps cost a few µs each: a traced
 * stream is slower than an untraced one; the order and the large gaps are what it shows.
 */
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import { basename, join } from 'node:path';

export interface HopEvent {
  /** µs, CLOCK_MONOTONIC. */
  t: number;
  /** w (write), r (chunk pushed), connect, secureConnect, accept, dial (connect() called). */
  k: string;
  /** Socket number within its process. */
  id: number;
  c: string;
  lp: number | null;
  rp: number | null;
  n: number;
}

const dir = process.env['BENCH_HOP_TRACE_DIR'];
if (dir) {
  const file = join(dir, `${basename(process.argv[1] ?? 'node', '.js')}-${process.argv[2] ?? ''}-${process.pid}.jsonl`);
  const out: string[] = [];
  const ids = new WeakMap<object, number>();
  let next = 1;
  const stamp = (k: string, s: net.Socket, n = 0): void => {
    if (out.length > 500_000) return;
    let id = ids.get(s);
    if (id === undefined) {
      id = next++;
      ids.set(s, id);
    }
    const e: HopEvent = {
      t: Number(process.hrtime.bigint() / 1000n),
      k,
      id,
      c: s.constructor.name,
      lp: s.localPort ?? null,
      rp: s.remotePort ?? null,
      n,
    };
    out.push(JSON.stringify(e));
  };
  const proto = net.Socket.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const write = proto['write']!;
  proto['write'] = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    stamp('w', this, (chunk as { length?: number })?.length ?? 0);
    return write.call(this, chunk, ...rest);
  };
  const push = proto['push']!;
  proto['push'] = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
    if (chunk) stamp('r', this, (chunk as { length?: number }).length ?? 0);
    return push.call(this, chunk, ...rest);
  };
  const connect = proto['connect']!;
  proto['connect'] = function (this: net.Socket, ...args: unknown[]) {
    stamp('dial', this);
    return connect.apply(this, args);
  };
  const emit = proto['emit']!;
  proto['emit'] = function (this: net.Socket, event: unknown, ...args: unknown[]) {
    if (event === 'connect' || event === 'secureConnect') stamp(event, this);
    return emit.call(this, event, ...args);
  };
  const serverProto = net.Server.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const serverEmit = serverProto['emit']!;
  serverProto['emit'] = function (this: net.Server, event: unknown, ...args: unknown[]) {
    if (event === 'connection') stamp('accept', args[0] as net.Socket);
    return serverEmit.call(this, event, ...args);
  };
  process.once('exit', () => appendFileSync(file, `${out.join('\n')}\n`));
}
