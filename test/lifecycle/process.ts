/**
 * One daemon of the lifecycle suite as a real process (build/daemons/<program>.js), started exactly as an
 * operator would, with its output captured to a log file, and the signals an operator (or systemd) sends:
 * SIGTERM, SIGKILL, SIGHUP, restart. Every process spawned here is SIGKILLed if the test process exits, so a
 * crashed test run leaves nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';

export type Program = 'ca' | 'proxy' | 'gateway' | 'connect';

export function programPath(program: Program): string {
  return fileURLToPath(new URL(`../../daemons/${program}.js`, import.meta.url));
}

/** process.env without INFISICAL_*: the daemons read their config from it, and a developer's shell must not leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFISICAL_')));
  return { ...env, ...extra };
}

const live = new Set<ChildProcess>();
const killAll = () => {
  for (const child of live) child.kill('SIGKILL');
};
process.once('exit', killAll);
// A test run stopped by a signal (the runner's timeout, Ctrl-C) must not orphan daemons either: kill them,
// then die of the same signal.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface OpsReply {
  status: number;
  /** Parsed JSON body (undefined if the body was not JSON). */
  json: Record<string, unknown> | undefined;
  text: string;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Named in the timeout error: "gateway gw-1 to report 2 tunnels up". */
  what: string;
  /** Extra text for the timeout error (e.g. log tails), computed only on timeout. */
  detail?: () => string | Promise<string>;
}

/**
 * Polls `predicate` until it returns a truthy value (returned), within `timeoutMs` (default 30 s). A throwing
 * predicate counts as "not yet"; its last error is reported on timeout.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  o: WaitOptions,
): Promise<Exclude<T, false | 0 | '' | null | undefined>> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as Exclude<T, false | 0 | '' | null | undefined>;
      last = `last value: ${JSON.stringify(value)}`;
    } catch (err) {
      last = `last error: ${(err as Error).message}`;
    }
    if (Date.now() >= deadline) {
      const detail = o.detail ? `\n${await o.detail()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${o.what} (${last})${detail}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
  }
}

/** Like waitFor, also returning how long it took (ms since the call): "revoked → refused within 1.2 s". */
export async function timeUntil<T>(
  predicate: () => T | Promise<T>,
  o: WaitOptions,
): Promise<{ value: Exclude<T, false | 0 | '' | null | undefined>; ms: number }> {
  const start = Date.now();
  const value = await waitFor(predicate, o);
  return { value, ms: Date.now() - start };
}

export function opsGet(port: number, path: string, timeoutMs = 5000): Promise<OpsReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET 127.0.0.1:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** One sample of a Prometheus text exposition: `name{a="b"} 3` → 3 (the sum when several label sets match). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

export interface DaemonSpec {
  /** Shown in errors and log markers: "gateway gw-1". */
  name: string;
  program: Program;
  /** Arguments after the program path; mutable: a test may change them before restart(). */
  args: string[];
  logFile: string;
  stateDir: string;
  /** The --ops-listen port, when the program has one. */
  opsPort?: number;
  /** When is a (re)started process ready; default: /readyz answers 200. */
  ready?: (d: Daemon) => Promise<boolean>;
}

export class Daemon {
  readonly name: string;
  readonly program: Program;
  args: string[];
  readonly logFile: string;
  readonly stateDir: string;
  readonly opsPort: number | undefined;
  /** Every pid this handle ever spawned (for leak checks). */
  readonly pids: number[] = [];
  #ready: (d: Daemon) => Promise<boolean>;
  #child: ChildProcess | undefined;
  #exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  #output = '';
  #runOutputStart = 0;

  constructor(spec: DaemonSpec) {
    this.name = spec.name;
    this.program = spec.program;
    this.args = spec.args;
    this.logFile = spec.logFile;
    this.stateDir = spec.stateDir;
    this.opsPort = spec.opsPort;
    this.#ready = spec.ready ?? (async (d) => (await d.readyz()).status === 200);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Resolves when the current process exits (at once if none runs). */
  get exited(): Promise<Exit> {
    return this.#exited;
  }

  /** Spawns the process (no wait). */
  spawn(): void {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    const child = spawn(process.execPath, [programPath(this.program), ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: cleanEnv(),
    });
    this.#child = child;
    live.add(child);
    if (child.pid !== undefined) this.pids.push(child.pid);
    this.#runOutputStart = this.#output.length;
    this.#append(`--- ${new Date().toISOString()} started ${this.name} pid ${child.pid}: ${this.args.join(' ')}\n`);
    const collect = (d: Buffer) => this.#append(d.toString());
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.#append(`--- ${new Date().toISOString()} ${this.name} pid ${child.pid} exited (${signal ?? code})\n`);
        resolve({ code, signal });
      });
    });
  }

  /** Spawns and waits until ready (or throws, with the log tail, if it exits or times out). */
  async start(timeoutMs = 30_000): Promise<void> {
    this.spawn();
    await this.waitReady(timeoutMs);
  }

  /** Waits until ready; an exit before that fails at once (with the log tail) instead of at the timeout. */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    let exitedEarly = false;
    const exit = this.#exited.then((e) => {
      exitedEarly = true;
      return e;
    });
    const ready = waitFor(() => exitedEarly || this.#ready(this), {
      timeoutMs,
      what: `${this.name} to be ready`,
      detail: () => this.tail(),
    });
    await Promise.race([ready, exit]);
    if (exitedEarly) {
      const e = await exit;
      throw new Error(`${this.name} exited (${e.signal ?? e.code}) before it was ready\n${this.tail()}`);
    }
  }

  /** SIGTERM, then waits for the exit; SIGKILL if it is not gone within `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<Exit> {
    const child = this.#child;
    if (!child || !this.running) return this.#exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL (a crash, a power cut): no drain, no goodbye. */
  async kill(): Promise<Exit> {
    if (this.running) this.#child!.kill('SIGKILL');
    return this.#exited;
  }

  /** SIGHUP: reload configuration. */
  hup(): void {
    if (!this.running) throw new Error(`${this.name} is not running`);
    this.#child!.kill('SIGHUP');
  }

  /** stop() (SIGTERM) then start() with the current `args`. */
  async restart(timeoutMs = 30_000): Promise<void> {
    await this.stop();
    await this.start(timeoutMs);
  }

  async readyz(): Promise<OpsReply> {
    return opsGet(this.#ops(), '/readyz');
  }

  async metrics(): Promise<string> {
    const r = await opsGet(this.#ops(), '/metrics');
    if (r.status !== 200) throw new Error(`${this.name} /metrics answered ${r.status}`);
    return r.text;
  }

  /** One metric from /metrics (summed over matching label sets), undefined if absent. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    return metricValue(await this.metrics(), name, labels);
  }

  /** Everything every process of this handle wrote so far (stdout and stderr, with start/exit markers). */
  log(): string {
    return this.#output;
  }

  /** The JSON lines of the current (or last) process's output. */
  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#output.slice(this.#runOutputStart).split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a partial line still being written
      }
    }
    return out;
  }

  /** The last lines of the log, labelled, for failure messages. */
  tail(lines = 25): string {
    const tail = this.#output.trimEnd().split('\n').slice(-lines);
    return `--- ${this.name} (${this.logFile}), last ${tail.length} lines:\n${tail.map((l) => `  ${l}`).join('\n')}`;
  }

  #append(text: string): void {
    this.#output += text;
    appendFileSync(this.logFile, text);
  }

  #ops(): number {
    if (this.opsPort === undefined) throw new Error(`${this.name} has no ops endpoint`);
    return this.opsPort;
  }
}

/** True while a process with this pid exists (signal 0 probes without signalling). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
