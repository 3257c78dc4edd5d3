/**
 * `infisical-connect` as a child process, the way a user runs it: exit status, stderr, and the --json events on
 * stdout. The environment is the test's alone (no INFISICAL_* of whoever runs the suite).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const CONNECT = join(dirname(fileURLToPath(import.meta.url)), '../../daemons/connect.js');

/** process.env without any INFISICAL_* variable, plus `env`. */
export function cleanEnv(env: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('INFISICAL_') && v !== undefined) out[k] = v;
  return { ...out, ...env };
}

export interface ConnectRun {
  child: ChildProcess;
  events: Record<string, unknown>[];
  stderr(): string;
  /** Resolves with the first event of this kind; rejects when the process exits first or after timeoutMs. */
  next(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; ms: number }>;
}

export function startConnect(args: string[], env: Record<string, string> = {}): ConnectRun {
  const t0 = Date.now();
  const child = spawn(process.execPath, [CONNECT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(env) });
  const events: Record<string, unknown>[] = [];
  const waiters: { event: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      e = { event: 'text', line };
    }
    events.push(e);
    for (const w of waiters.filter((x) => x.event === e['event'])) w.resolve(e);
  });
  const exit = new Promise<{ code: number | null; ms: number }>((resolve) =>
    child.once('close', (code) => resolve({ code, ms: Date.now() - t0 })),
  );
  return {
    child,
    events,
    exit,
    stderr: () => stderr,
    next: (event, timeoutMs = 20_000) => {
      const seen = events.find((e) => e['event'] === event);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${event} event; got ${JSON.stringify(events)} ${stderr}`)),
          timeoutMs,
        );
        waiters.push({
          event,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
        void exit.then(() => {
          clearTimeout(timer);
          reject(new Error(`exited before ${event}: ${JSON.stringify(events)} ${stderr}`));
        });
      });
    },
  };
}

/** Runs to the end: exit status, how long it took, stdout events and stderr. */
export async function runConnect(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; ms: number; events: Record<string, unknown>[]; stderr: string }> {
  const run = startConnect(args, env);
  const { code, ms } = await run.exit;
  return { code, ms, events: run.events, stderr: run.stderr() };
}
