/**
 * SSH client with OpenSSH certificates on both ends: authenticates with a user certificate and accepts the
 * server only through a host certificate that lib/sshcert verifies. No known_hosts, no plain host keys.
 */
import type { ConnectConfig } from 'ssh2';
import { GatewayError, refuse, type Verdict } from '../errors/codes.js';
import { parseCertificate, type SshCertificate, verifyCertificate } from '../sshcert/index.js';
import { CLIENT_ALGORITHMS, Client } from './ssh2.js';

export interface HostCertPolicy {
  /** Host CA public key blobs to trust (the proxy SSH server CAs). */
  trustedHostCaKeys: Buffer[];
  /** The host name we dialled: it must be one of the host certificate's principals. */
  hostPrincipal: string;
  isRevoked?: (cert: SshCertificate) => boolean;
}

export interface CertClientOptions
  extends HostCertPolicy,
    Pick<ConnectConfig, 'keepaliveInterval' | 'keepaliveCountMax' | 'readyTimeout' | 'sock' | 'debug' | 'ident'> {
  host: string;
  port: number;
  username: string;
  /** OpenSSH private key (PEM text or Buffer). */
  privateKey: string | Buffer;
  /** The user certificate for `privateKey`: blob or OpenSSH text line. */
  certificate: Buffer | string;
  /** Clock in milliseconds since the epoch (default Date.now). */
  now?: () => number;
}

export interface CertSshConnection {
  client: Client;
  /** The server's host certificate, as verified. */
  hostCertificate: SshCertificate;
}

/** Pure host check: `blob` (what the server sent as its host key) must be a valid host certificate. */
export function verifyHostCertificate(blob: Buffer, policy: HostCertPolicy, nowMs: number): Verdict<SshCertificate> {
  const parsed = parseCertificate(blob);
  if (!parsed.ok) return refuse(parsed.code, `host key is not a usable certificate: ${parsed.reason}`);
  return verifyCertificate(parsed.value, {
    trustedCaKeys: policy.trustedHostCaKeys,
    type: 'host',
    principal: policy.hostPrincipal,
    now: Math.floor(nowMs / 1000),
    ...(policy.isRevoked ? { isRevoked: policy.isRevoked } : {}),
  });
}

/**
 * Connects and authenticates. Resolves once the session is ready; the caller then owns the client and
 * must listen for its 'error' and 'close'. Refusals reject with a GatewayError: E_SSH_HOST_CERT (the
 * sshcert code and reason in the message) or E_SSH_AUTH.
 */
export function connectWithCertificate(opts: CertClientOptions): Promise<CertSshConnection> {
  const now = opts.now ?? Date.now;
  const client = new Client();
  let hostCertificate: SshCertificate | undefined;
  let hostRefusal: Verdict<SshCertificate> | undefined;

  return new Promise((resolve, reject) => {
    const settle = (err?: Error): void => {
      client.off('ready', onReady).off('error', onError).off('close', onClose);
      if (err) {
        client.on('error', () => {}); // late errors of a dead connection must not crash the process
        client.end();
        reject(err);
      } else {
        resolve({ client, hostCertificate: hostCertificate! });
      }
    };
    const onReady = (): void => settle();
    const onError = (err: Error & { level?: string }): void => {
      if (hostRefusal && !hostRefusal.ok) {
        settle(new GatewayError('E_SSH_HOST_CERT', `${hostRefusal.code}: ${hostRefusal.reason}`, { cause: err }));
      } else if (err.level === 'client-authentication') {
        settle(new GatewayError('E_SSH_AUTH', `user certificate refused by ${opts.host}:${opts.port}`, { cause: err }));
      } else {
        settle(err);
      }
    };
    const onClose = (): void => settle(new GatewayError('E_SSH_AUTH', 'connection closed before authentication'));
    client.on('ready', onReady).on('error', onError).on('close', onClose);

    const config: ConnectConfig = {
      host: opts.host,
      port: opts.port,
      username: opts.username,
      privateKey: opts.privateKey,
      certificate: opts.certificate,
      authHandler: ['publickey'],
      algorithms: CLIENT_ALGORITHMS,
      hostVerifier: (key: Buffer): boolean => {
        // On a re-key, like OpenSSH, accept only the certificate verified at connect time
        if (hostCertificate) return key.equals(hostCertificate.blob);
        hostRefusal = verifyHostCertificate(key, opts, now());
        if (hostRefusal.ok) hostCertificate = hostRefusal.value;
        return hostRefusal.ok;
      },
    };
    for (const k of ['keepaliveInterval', 'keepaliveCountMax', 'readyTimeout', 'sock', 'debug', 'ident'] as const) {
      if (opts[k] !== undefined) Object.assign(config, { [k]: opts[k] });
    }
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 throws synchronously on a key or certificate it cannot use
      settle(new GatewayError('E_KEY_UNSUPPORTED', (err as Error).message, { cause: err }));
    }
  });
}
