/**
 * A test SSH server's whole authentication loop on one connection, over lib/sshwire's verifyUserAuth (the
 * decision the proxy's listener makes per attempt): tries, a grace timeout, and the certificate that
 * passed. Test peers for lib/sshwire and the gateway's tunnels, and the ssh benchmark, use it; the proxy runs
 * its own loop (lib/proxy/ssh-listener.ts) with its limits and audit.
 */
import { GatewayError, refuse, type Verdict } from '../../lib/errors/codes.js';
import type { SshCertificate } from '../../lib/sshcert/index.js';
import { type UserAuthOptions, verifyUserAuth } from '../../lib/sshwire/server.js';
import type { AuthContext, Connection } from '../../lib/sshwire/ssh2.js';

export interface AuthenticateOptions extends UserAuthOptions {
  trustedUserCaKeys: Buffer[];
  /** Clock in milliseconds since the epoch (default Date.now). */
  now?: () => number;
  /** Refused attempts before the connection is dropped (OpenSSH's MaxAuthTries). */
  maxAttempts?: number;
  /** Time allowed to authenticate (OpenSSH's LoginGraceTime). */
  timeoutMs?: number;
}

/**
 * Runs authentication on a new connection: resolves with the verified user certificate once the session
 * is ready, rejects with a GatewayError (the last refusal's code) when the client gives up, fails too
 * often or too slowly. The caller should handle the connection's 'error'.
 */
export function authenticateUser(conn: Connection, opts: AuthenticateOptions): Promise<SshCertificate> {
  const now = opts.now ?? Date.now;
  const maxAttempts = opts.maxAttempts ?? 6;
  let attempts = 0;
  let verified: SshCertificate | undefined;
  let last: Verdict<SshCertificate> = refuse('E_SSH_AUTH', 'no authentication attempt');

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail('authentication timed out'), opts.timeoutMs ?? 20_000);
    const done = (): void => {
      clearTimeout(timer);
      conn.off('authentication', onAuth).off('ready', onReady).off('close', onClose).off('error', onClose);
    };
    const fail = (why: string): void => {
      done();
      conn.end();
      reject(new GatewayError(last.ok ? 'E_SSH_AUTH' : last.code, last.ok ? why : `${why}: ${last.reason}`));
    };
    const onAuth = (ctx: AuthContext): void => {
      // "none" is how clients ask which methods exist: not an attempt
      if (ctx.method === 'none') {
        ctx.reject(['publickey']);
        return;
      }
      const verdict = verifyUserAuth(ctx, opts.trustedUserCaKeys, now(), opts);
      // Clients try several keys (ssh offers the certificate, then the plain key): report the
      // certificate's refusal rather than a later generic one
      const keepSpecific = !last.ok && last.code !== 'E_SSH_AUTH' && !verdict.ok && verdict.code === 'E_SSH_AUTH';
      if (!keepSpecific) last = verdict;
      if (verdict.ok) {
        if (ctx.method === 'publickey' && ctx.signature !== undefined) verified = verdict.value;
        ctx.accept();
      } else if (++attempts >= maxAttempts) {
        fail('too many authentication attempts');
      } else {
        ctx.reject(['publickey']);
      }
    };
    const onReady = (): void => {
      done();
      if (verified) resolve(verified);
      else reject(new GatewayError('E_SSH_AUTH', 'session ready without a signed certificate'));
    };
    const onClose = (): void => fail('connection closed before authentication');
    conn.on('authentication', onAuth).on('ready', onReady).on('close', onClose).on('error', onClose);
  });
}
