/**
 * Launches a private OpenSSH `sshd` for a test: foreground (-D), logging to stderr (-e), its own config in
 * a temp dir, on 127.0.0.1 and a free port. Nothing of the system's sshd configuration is used.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { freePort, type TempDir } from './openssh.js';

export const SSHD = '/usr/sbin/sshd';

export interface SshdOptions {
  dir: TempDir;
  hostKeyPath: string;
  hostCertPath?: string;
  /** File with the user CA public key(s). */
  trustedUserCaKeysPath?: string;
  /** Principals accepted for every user (AuthorizedPrincipalsFile). */
  principals?: string[];
  /** More sshd_config lines. */
  extra?: string[];
}

export interface RunningSshd {
  port: number;
  /** The listening sshd (each connection's processes are its descendants). */
  pid: number;
  /** The login user that tests should use (the one running the tests). */
  user: string;
  /** Everything sshd logged so far. */
  log(): string;
  stop(): Promise<void>;
}

export async function startSshd(o: SshdOptions): Promise<RunningSshd> {
  // Debian's sshd insists on its privilege separation directory, even in -D mode
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await launch(o, port);
    } catch (err) {
      // another process may take the port between freePort() and sshd's bind
      if (attempt >= 3 || !/Bind to port|Address already in use/.test(String(err))) throw err;
    }
  }
}

function launch(o: SshdOptions, port: number): Promise<RunningSshd> {
  const config = [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${o.hostKeyPath}`,
    ...(o.hostCertPath ? [`HostCertificate ${o.hostCertPath}`] : []),
    ...(o.trustedUserCaKeysPath ? [`TrustedUserCAKeys ${o.trustedUserCaKeysPath}`] : []),
    ...(o.principals
      ? [`AuthorizedPrincipalsFile ${o.dir.write(`principals-${port}`, `${o.principals.join('\n')}\n`)}`]
      : []),
    'AuthorizedKeysFile none',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'StrictModes no',
    'UsePAM no',
    'PidFile none',
    'UseDNS no',
    'LogLevel VERBOSE',
    ...(o.extra ?? []),
  ];
  const configPath = o.dir.write(`sshd_config-${port}`, `${config.join('\n')}\n`);
  const child = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`sshd exited (${code}): ${log}`));
    child.once('exit', onExit);
    child.once('error', reject);
    const poll = setInterval(() => {
      if (!log.includes(`Server listening on 127.0.0.1 port ${port}`)) return;
      clearInterval(poll);
      child.off('exit', onExit);
      resolve({ port, pid: child.pid!, user: userInfo().username, log: () => log, stop: () => stop(child) });
    }, 20);
    child.once('exit', () => clearInterval(poll));
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
