/**
 * Test helpers around the real OpenSSH tools: temp dirs, ssh-keygen keys and certificates, and the `ssh`
 * client run with a private, throw-away configuration.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class TempDir {
  readonly path: string;
  constructor(prefix = 'sshwire-') {
    this.path = mkdtempSync(join(tmpdir(), prefix));
  }
  file(name: string): string {
    return join(this.path, name);
  }
  write(name: string, data: string | Buffer, mode = 0o600): string {
    const p = this.file(name);
    writeFileSync(p, data, { mode });
    return p;
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** A key made by ssh-keygen: its paths and contents. */
export interface KeyFiles {
  path: string;
  pubPath: string;
  /** OpenSSH private key text. */
  privateKey: string;
  /** Public key line. */
  publicLine: string;
  /** The public key blob. */
  blob: Buffer;
}

export function lineBlob(line: string): Buffer {
  return Buffer.from(line.trim().split(/\s+/)[1] ?? '', 'base64');
}

export function keygen(dir: TempDir, name: string, type: 'ed25519' | 'rsa' | 'ecdsa' = 'ed25519'): KeyFiles {
  const path = dir.file(name);
  const bits = type === 'rsa' ? ['-b', '2048'] : [];
  execFileSync('ssh-keygen', ['-q', '-t', type, ...bits, '-N', '', '-C', name, '-f', path], { stdio: 'pipe' });
  const publicLine = readFileSync(`${path}.pub`, 'utf8').trim();
  return {
    path,
    pubPath: `${path}.pub`,
    privateKey: readFileSync(path, 'utf8'),
    publicLine,
    blob: lineBlob(publicLine),
  };
}

export interface CertFiles {
  /** Path of the "-cert.pub" file. */
  path: string;
  line: string;
  blob: Buffer;
}

/**
 * Signs `key` with `ca` through `ssh-keygen -s`. `validity` is ssh-keygen's -V argument (default: from
 * 5 minutes ago for an hour); `host` makes a host certificate.
 */
export function keygenSign(
  ca: KeyFiles,
  key: KeyFiles,
  o: { id: string; principals: string[]; host?: boolean; validity?: string; options?: string[] },
): CertFiles {
  const args = ['-q', '-s', ca.path, '-I', o.id, '-n', o.principals.join(','), '-V', o.validity ?? '-5m:+1h'];
  if (o.host) args.push('-h');
  for (const opt of o.options ?? []) args.push('-O', opt);
  execFileSync('ssh-keygen', [...args, key.pubPath], { stdio: 'pipe' });
  const path = key.path.concat('-cert.pub');
  const line = readFileSync(path, 'utf8').trim();
  return { path, line, blob: lineBlob(line) };
}

/** A TCP port that was free a moment ago on 127.0.0.1 (for daemons that cannot report their own). */
/** Ports handed out by this process (the kernel may give a port closed a moment ago to the next ask). */
const handedOut = new Set<number>();

/**
 * A loopback port nobody listens on now, never one this process handed out before: two asks in a row can get the
 * same port from the kernel (seen in CI: a daemon given one port for both its API and ops listeners).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
      });
    });
    if (!handedOut.has(port) || attempt >= 50) {
      handedOut.add(port);
      return port;
    }
  }
}

export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SshRun {
  port: number;
  user: string;
  identity: KeyFiles;
  certificate?: CertFiles;
  /** known_hosts file content (e.g. an `@cert-authority` line). */
  knownHosts: string;
  dir: TempDir;
  /** Extra `-o` options or arguments before the destination. */
  args?: string[];
  /** Remote command (default `true`). */
  command?: string;
  timeoutMs?: number;
}

/** Runs the real `ssh` client with no user or system configuration; never rejects. */
export function runSsh(r: SshRun): Promise<SshResult> {
  const knownHosts = r.dir.write(`known_hosts-${r.port}-${Math.random().toString(36).slice(2)}`, r.knownHosts);
  const args = [
    '-F',
    '/dev/null',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'ConnectTimeout=10',
    '-i',
    r.identity.path,
    ...(r.certificate ? ['-o', `CertificateFile=${r.certificate.path}`] : []),
    '-p',
    String(r.port),
    ...(r.args ?? []),
    `${r.user}@127.0.0.1`,
    r.command ?? 'true',
  ];
  return new Promise((resolve) => {
    execFile('ssh', args, { timeout: r.timeoutMs ?? 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
