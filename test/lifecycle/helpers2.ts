/**
 * More helpers for the "trust over time" suite (renewal, revocation latency, fleet changes): a one-shot run of
 * any program's CLI (`infisical-gateway renew`), a live stream held open after one checked echo round trip,
 * and a paced transfer that keeps sending until told to stop, so it provably runs across an event (a renewal,
 * a reload), then checks every byte by SHA-256 at the target and on the way back.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { CliResult } from '../ca/daemon-helpers.js';
import type { GatewayHandle, ProxyHandle } from './deploy.js';
import { cleanEnv, type Program, programPath } from './process.js';
import type { Target, TransferResult } from './transfer.js';

/** Runs `infisical-<program> <args>` to completion (never throws for a non-zero exit: read `code`). */
export function runProgram(program: Program, args: string[], timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [programPath(program), ...args],
      { env: cleanEnv(), timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface LiveStream {
  socket: net.Socket;
  /** performance.now() when the socket closed. */
  closed: Promise<number>;
}

/**
 * Connects through a connect listener, sends 4 KiB of random bytes and waits until exactly those bytes came
 * back (SHA-256 compared), then holds the stream open.
 */
export async function liveStream(port: number, timeoutMs = 30_000): Promise<LiveStream> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const probe = randomBytes(4096);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  socket.on('error', () => {});
  const parts: Buffer[] = [];
  let got = 0;
  const echoed = new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= probe.length) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  socket.once('connect', () => socket.write(probe));
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
  const outcome = await Promise.race([
    echoed.then(() => 'echoed' as const),
    closed.then(() => 'closed' as const),
    timer,
  ]);
  if (outcome !== 'echoed') {
    socket.destroy();
    throw new Error(`live stream through port ${port}: ${outcome} before the echo round trip (${got} bytes back)`);
  }
  const back = Buffer.concat(parts);
  if (sha256(back) !== sha256(probe)) {
    socket.destroy();
    throw new Error(`live stream through port ${port}: the echo differs from what was sent (sha256)`);
  }
  return { socket, closed };
}

/** Resolves with the ms from now until the stream closes, or rejects after `timeoutMs`. */
export async function closedWithin(s: LiveStream, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  const timeout = new Promise<number>((r) => setTimeout(() => r(Number.NaN), timeoutMs).unref());
  const at = await Promise.race([s.closed, timeout]);
  if (Number.isNaN(at)) {
    s.socket.destroy();
    throw new Error(`${what}: the live stream was not cut within ${timeoutMs} ms`);
  }
  return Math.max(0, at - start);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface PacedTransferOptions {
  port: number;
  target: Target;
  /** Bytes per second sent (roughly: chunks of `chunkBytes` at this pace). */
  rate: number;
  /** Keeps sending until this resolves (and at least `minBytes` went out), then finishes. */
  until: Promise<unknown>;
  minBytes?: number;
  /** Stops sending at this many bytes whatever `until` does (then the result says it ended early). */
  maxBytes: number;
  chunkBytes?: number;
  /** Bound on the whole transfer; default 120 s. */
  timeoutMs?: number;
}

export interface PacedResult extends TransferResult {
  /** `until` resolved while bytes were still being sent (the transfer spanned the event). */
  spanned: boolean;
}

/**
 * One TCP stream to an echo target, sending random chunks at a pace until `until` resolves, then waiting for
 * every byte to come back; byte-exact when the target received and echoed exactly what was sent (SHA-256).
 */
export async function pacedTransfer(o: PacedTransferOptions): Promise<PacedResult> {
  const start = Date.now();
  const chunk = o.chunkBytes ?? 64 * 1024;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const sent = createHash('sha256');
  const echoHash = createHash('sha256');
  let sentBytes = 0;
  let echoedBytes = 0;
  let head = Buffer.alloc(0);
  let error: string | undefined;
  let stop = false;
  let spanned = false;
  void o.until.then(() => {
    if (!stop) spanned = true;
    stop = true;
  });
  const socket = net.connect(o.port, '127.0.0.1');
  socket.setNoDelay(true);
  const timer = setTimeout(() => {
    error ??= `timed out after ${timeoutMs} ms (sent ${sentBytes}, echoed ${echoedBytes})`;
    socket.destroy();
  }, timeoutMs);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.on('error', (err) => {
    error ??= `socket error: ${err.message}`;
  });
  let done = false;
  let wakeEcho: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    echoedBytes += d.length;
    echoHash.update(d);
    if (done && echoedBytes >= sentBytes) wakeEcho?.();
  });
  await Promise.race([once(socket, 'connect').catch(() => undefined), closed]);
  while (!socket.destroyed && sentBytes < o.maxBytes && (!stop || sentBytes < (o.minBytes ?? 0))) {
    const piece = randomBytes(Math.min(chunk, o.maxBytes - sentBytes));
    if (head.length < 32) head = Buffer.concat([head, piece]).subarray(0, 32);
    sent.update(piece);
    sentBytes += piece.length;
    if (!socket.write(piece)) await Promise.race([once(socket, 'drain').catch(() => undefined), closed]);
    // Pace: sleep until the schedule catches up with what was sent.
    const ahead = (sentBytes / o.rate) * 1000 - (Date.now() - start);
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
  if (!stop) {
    error ??= socket.destroyed
      ? `the stream closed after ${sentBytes} bytes sent (${echoedBytes} echoed), before the event it was to span`
      : `reached maxBytes (${sentBytes}) before the event it was to span`;
  }
  done = true;
  if (!socket.destroyed && echoedBytes < sentBytes) {
    await Promise.race([new Promise<void>((r) => (wakeEcho = r)), closed]);
  }
  if (echoedBytes < sentBytes) error ??= `closed after ${echoedBytes} of ${sentBytes} echoed bytes`;
  const conn = o.target.connections.find((c) => c.head.length > 0 && head.subarray(0, c.head.length).equals(c.head));
  const deadline = start + timeoutMs;
  while (!error && conn && conn.bytes < sentBytes && !conn.closed && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  clearTimeout(timer);
  socket.destroy();
  const sentSha256 = sent.digest('hex');
  const echoedSha256 = echoHash.digest('hex');
  const targetBytes = conn?.bytes ?? 0;
  const targetSha256 = conn?.sha256();
  if (!error) {
    if (!conn) error = 'the target never saw this connection';
    else if (targetBytes !== sentBytes) error = `the target received ${targetBytes} of ${sentBytes} bytes`;
    else if (targetSha256 !== sentSha256) error = 'the target received different bytes (sha256 mismatch)';
    else if (echoedBytes !== sentBytes) error = `${echoedBytes} of ${sentBytes} bytes came back`;
    else if (echoedSha256 !== sentSha256) error = 'different bytes came back (sha256 mismatch)';
  }
  return {
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    bytes: sentBytes,
    sentSha256,
    targetBytes,
    targetSha256,
    echoedBytes,
    echoedSha256,
    ms: Date.now() - start,
    spanned,
  };
}

/** /readyz detail of a proxy: tunnels and gateways it holds now. */
export async function proxyTunnels(p: ProxyHandle): Promise<{ tunnels: number; gateways: number }> {
  const r = await p.readyz();
  const d = r.json?.['detail'] as { tunnels?: number; gateways?: number } | undefined;
  return { tunnels: d?.tunnels ?? -1, gateways: d?.gateways ?? -1 };
}

/** Every gateway reports exactly `n` tunnels up (/readyz detail.tunnelsUp). */
export async function everyGatewayHas(gateways: GatewayHandle[], n: number): Promise<boolean> {
  for (const g of gateways) if ((await g.tunnelsUp()) !== n) return false;
  return true;
}
