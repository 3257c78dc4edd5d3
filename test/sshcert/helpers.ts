/** Test helpers: temp dirs and the real ssh-keygen. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NOW = 1_800_000_000;
export const HOUR = 3600;

export const hex = (seconds: number): string => `0x${seconds.toString(16)}`;

export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'sshcert-test-'));
  file(name: string): string {
    return join(this.path, name);
  }
  write(name: string, data: string | Buffer, mode = 0o600): string {
    const p = this.file(name);
    writeFileSync(p, data, { mode });
    return p;
  }
  read(name: string): string {
    return readFileSync(this.file(name), 'utf8');
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Runs ssh-keygen with UTC times so validity output is stable; returns stdout. */
export function sshKeygen(args: string[]): string {
  return execFileSync('ssh-keygen', args, { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' }, stdio: 'pipe' });
}

/** Generates an unencrypted key pair with ssh-keygen; returns the private key path. */
export function keygen(dir: TempDir, name: string, type: 'ed25519' | 'rsa' | 'ecdsa', bits?: number): string {
  const path = dir.file(name);
  sshKeygen(['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', name, '-f', path]);
  return path;
}

/** Signs `pubPath` with ssh-keygen -s and returns the certificate line. */
export function keygenSign(caPath: string, pubPath: string, args: string[]): string {
  sshKeygen(['-q', '-s', caPath, ...args, pubPath]);
  return readFileSync(pubPath.replace(/\.pub$/, '-cert.pub'), 'utf8').trim();
}
