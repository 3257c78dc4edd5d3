/** Running the real `infisical-ca` (build/daemons/ca.js) as a child process. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const DAEMON = fileURLToPath(new URL('../../daemons/ca.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion. The environment is cleared of INFISICAL_CA_* unless given. */
export function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFISICAL_CA_')));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DAEMON, ...args],
      { env: { ...base, ...env }, timeout: 30_000 },
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

export async function cliJson<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const r = await cli([...args, '--json'], env);
  if (r.code !== 0) throw new Error(`infisical-ca ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface Served {
  child: ChildProcess;
  url: string;
  ops: string;
  fingerprint: string;
  /** Every JSON log line so far. */
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
}

/** Starts `serve` on free loopback ports and waits for its "serving" line; `env` adds to the environment. */
export function serve(stateDir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(
    process.execPath,
    [DAEMON, 'serve', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--ops-listen', '127.0.0.1:0', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      buffer += c.toString();
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf('\n');
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          lines.push(obj);
          if (obj['msg'] === 'serving') {
            clearTimeout(timer);
            resolve({
              child,
              url: String(obj['url']),
              ops: String(obj['ops']),
              fingerprint: String(obj['fingerprint']),
              lines,
              exited,
            });
          }
        } catch {
          // not a JSON line
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}: ${stderr}`));
    });
  });
}
