/**
 * A booted Debian 12 system for the packaging tests: the cached minbase root (make-rootfs.sh) unpacked into a
 * private directory and booted with systemd-nspawn (real systemd 252 as its PID 1, its own network namespace
 * with loopback only). Commands run inside through nsenter into the container's namespaces.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const PATH = 'PATH=/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Why the packaging tests cannot run on this host, or undefined when they can. */
export function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (systemd-nspawn and dpkg need root)';
  for (const [tool, pkg] of [
    ['systemd-nspawn', 'systemd-container'],
    ['debootstrap', 'debootstrap'],
    ['nsenter', 'util-linux'],
    ['dpkg-deb', 'dpkg'],
  ] as const) {
    const found = (process.env['PATH'] ?? '/usr/bin:/bin')
      .split(':')
      .concat('/usr/sbin', '/sbin')
      .some((dir) => existsSync(join(dir, tool)));
    if (!found) return `${tool} is missing (apt-get install ${pkg})`;
  }
  return undefined;
}

export async function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, {
      ...options,
      maxBuffer: 64 << 20,
      encoding: 'utf8',
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Container {
  readonly root: string;
  readonly #dir: string;
  #nspawn: ChildProcess | undefined;
  #leader = 0;
  #console = '';

  private constructor(dir: string) {
    this.#dir = dir;
    this.root = join(dir, 'root');
  }

  /** Unpacks the root and boots it; resolves once systemd reports the system running (or degraded). */
  static async boot(rootfsTar: string): Promise<Container> {
    const base = process.env['INFISICAL_TEST_CACHE'] ?? '/var/cache/infisical-test';
    const container = new Container(mkdtempSync(join(base, 'run-')));
    const untar = await run('sh', ['-c', `mkdir -p "$1" && tar -C "$1" -xf "$2"`, 'untar', container.root, rootfsTar]);
    if (untar.code !== 0) throw new Error(`unpacking ${rootfsTar}: ${untar.stderr}`);
    await container.#start();
    return container;
  }

  async #start(): Promise<void> {
    const child = spawn(
      'systemd-nspawn',
      ['-q', '--register=no', '--keep-unit', '--private-network', '-D', this.root, '-b', '--console=pipe'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#nspawn = child;
    const collect = (chunk: Buffer) => {
      this.#console = (this.#console + chunk.toString('utf8')).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const deadline = Date.now() + 60_000;
    while (!this.#leader) {
      if (child.exitCode !== null) throw new Error(`systemd-nspawn exited ${child.exitCode}: ${this.#console}`);
      if (Date.now() > deadline) throw new Error(`no container leader after 60 s: ${this.#console}`);
      const children = readChildren(child.pid!);
      if (children[0]) this.#leader = children[0];
      else await sleep(100);
    }
    while (true) {
      const state = await this.exec(['systemctl', 'is-system-running', '--wait']);
      const text = state.stdout.trim();
      if (text === 'running' || text === 'degraded') return;
      if (Date.now() > deadline) throw new Error(`container did not finish booting (${text}): ${state.stderr}`);
      await sleep(200);
    }
  }

  /** Runs a command inside the container (as root, clean environment, optional stdin). */
  exec(argv: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
    const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const child = spawn('nsenter', ['-t', String(this.#leader), '-a', 'env', '-i', PATH, ...env, ...argv], {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    if (options.input !== undefined) {
      // A command may exit without reading its input (EPIPE): its exit code tells what happened.
      child.stdin!.on('error', () => {});
      child.stdin!.end(options.input);
    }
    return new Promise((resolve) => {
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** Like exec, but a non-zero exit throws with the command's output. */
  async must(argv: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<string> {
    const r = await this.exec(argv, options);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /** `systemctl show` properties as a map. */
  async show(unit: string, ...properties: string[]): Promise<Record<string, string>> {
    const out = await this.must(['systemctl', 'show', unit, ...properties.map((p) => `--property=${p}`)]);
    return Object.fromEntries(
      out
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
  }

  /** Waits until `check` returns a value (polling), or throws after `ms`. */
  async until<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + ms;
    while (true) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(250);
    }
  }

  /** Powers the container off (SIGKILL after 20 s) and deletes its directory. */
  async destroy(): Promise<void> {
    const child = this.#nspawn;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      if (this.#leader) await this.exec(['systemctl', 'poweroff']);
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function readChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
