/**
 * Probes the trust-over-time tests share beyond deploy.ts: a live stream held open through a connect listener
 * (checksummed at both ends as it goes, so a test can see it cut), a TCP refusal check, the CA database read
 * (certificate serials of a grant: the admin CLI does not list them), log line counting, and a one-shot
 * command run that reports the exit status and output.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cleanEnv, type Exit, type Program, programPath } from './process.js';
import type { Target, TargetConnection } from './transfer.js';

const HEAD = 32;

export interface LiveStream {
  /** Sends `bytes` random bytes and waits for them to come back; true when both ends saw exactly what was sent. */
  exchange(bytes: number, timeoutMs?: number): Promise<{ ok: boolean; error?: string }>;
  /** The socket closed (by the far side, or close()). */
  readonly closed: boolean;
  readonly whenClosed: Promise<void>;
  close(): void;
}

/**
 * Opens one connection through a connect listener to an echo target and keeps it open. Each exchange checks
 * the running SHA-256 of everything sent against what the target received and what came back.
 */
export async function liveStream(port: number, target: Target): Promise<LiveStream> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let closed = false;
  const whenClosed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  await Promise.race([once(socket, 'connect'), whenClosed]);
  const sent = createHash('sha256');
  const echoed = createHash('sha256');
  let sentBytes = 0;
  let echoedBytes = 0;
  let head = Buffer.alloc(0);
  let onEcho: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    echoedBytes += d.length;
    echoed.update(d);
    onEcho?.();
  });
  const conn = (): TargetConnection | undefined =>
    target.connections.find((c) => c.head.length > 0 && head.subarray(0, c.head.length).equals(c.head));

  return {
    get closed() {
      return closed;
    },
    whenClosed,
    close: () => socket.destroy(),
    async exchange(bytes, timeoutMs = 15_000) {
      if (closed) return { ok: false, error: 'the stream is closed' };
      const data = randomBytes(bytes);
      if (head.length < HEAD) head = Buffer.concat([head, data.subarray(0, HEAD - head.length)]);
      sent.update(data);
      sentBytes += bytes;
      socket.write(data);
      const deadline = Date.now() + timeoutMs;
      while (echoedBytes < sentBytes && !closed && Date.now() < deadline) {
        await Promise.race([
          new Promise<void>((r) => {
            onEcho = r;
          }),
          whenClosed,
          new Promise((r) => setTimeout(r, 100)),
        ]);
      }
      onEcho = undefined;
      const want = sent.copy().digest('hex');
      const c = conn();
      if (echoedBytes !== sentBytes) return { ok: false, error: `${echoedBytes} of ${sentBytes} bytes came back` };
      if (echoed.copy().digest('hex') !== want) return { ok: false, error: 'different bytes came back' };
      if (!c || c.bytes !== sentBytes || c.sha256() !== want) {
        return { ok: false, error: `the target saw ${c?.bytes ?? 0} of ${sentBytes} bytes or other bytes` };
      }
      return { ok: true };
    },
  };
}

/** Resolves true when a TCP connect to 127.0.0.1:port is refused (nothing listens), false when it connects. */
export function tcpRefused(port: number, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(false));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}

/** The certificate serials the CA recorded for a grant, by kind (grant-inner, grant-outer-instance, …). */
export function grantSerials(caStateDir: string, grantId: string): Record<string, string> {
  const db = new Database(join(caStateDir, 'ca.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT kind, serial FROM certificates WHERE grant_id = ?').all(grantId) as {
      kind: string;
      serial: string;
    }[];
    return Object.fromEntries(rows.map((r) => [r.kind, r.serial]));
  } finally {
    db.close();
  }
}

/** How many of these JSON log lines carry a message starting with `msg`. */
export function countMessages(lines: readonly Record<string, unknown>[], msg: string): number {
  return lines.filter((l) => typeof l['msg'] === 'string' && l['msg'].startsWith(msg)).length;
}

export interface RunResult extends Exit {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a daemon program to its exit (or SIGKILL after `timeoutMs`): exit, output and how long it ran. */
export async function runProgram(program: Program, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  const start = Date.now();
  const child = spawn(process.execPath, [programPath(program), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr, ms: Date.now() - start };
}
