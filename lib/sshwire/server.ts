/**
 * SSH server side with OpenSSH certificates: presents a host certificate, and authenticates clients only
 * by user certificates that lib/sshcert verifies. Plain keys, passwords and every other method are refused.
 */
import type { AddressInfo } from 'node:net';
import { refuse, type Verdict } from '../errors/codes.js';
import {
  parseCertificate,
  type SshCertificate,
  type VerifyOptions,
  verifyCertificate,
  verifySshSignature,
} from '../sshcert/index.js';
import {
  type AuthContext,
  CERT_SUFFIX,
  type ClientInfo,
  type Connection,
  Server,
  TRANSPORT_ALGORITHMS,
} from './ssh2.js';

export interface CertServerOptions {
  /** OpenSSH private host key (PEM text or Buffer). */
  hostKey: string | Buffer;
  /** The host certificate for `hostKey`: blob or OpenSSH text line. */
  hostCertificate: Buffer | string;
  ident?: string;
  banner?: string;
  debug?: (msg: string) => void;
}

/** Creates an ssh2 Server that offers the host certificate (and the plain key) with strong algorithms. */
export function createCertServer(
  opts: CertServerOptions,
  onConnection?: (conn: Connection, info: ClientInfo) => void,
): Server {
  return new Server(
    {
      hostKeys: [{ key: opts.hostKey, certificate: opts.hostCertificate }],
      algorithms: TRANSPORT_ALGORITHMS,
      ...(opts.ident ? { ident: opts.ident } : {}),
      ...(opts.banner ? { banner: opts.banner } : {}),
      ...(opts.debug ? { debug: opts.debug } : {}),
    },
    onConnection,
  );
}

/** Starts listening; resolves with the bound port (pass port 0 for a free one). */
export function listen(server: Server, port: number, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export type UserAuthOptions = Pick<VerifyOptions, 'principal' | 'knownCriticalOptions' | 'isRevoked'>;

/** The algorithm name at the head of an SSH signature blob, if well formed. */
function signatureAlgorithm(signature: Buffer): string | undefined {
  if (signature.length < 4) return undefined;
  const len = signature.readUInt32BE(0);
  return len <= signature.length - 4 ? signature.subarray(4, 4 + len).toString('latin1') : undefined;
}

/** The request's key algorithm must name the certificate, and RSA ones may name the SHA-2 hash instead. */
function keyAlgorithmFits(keyAlgo: string, cert: SshCertificate): boolean {
  if (keyAlgo === cert.certAlgorithm) return true;
  return cert.keyAlgorithm === 'ssh-rsa' && /^rsa-sha2-(256|512)-cert-v01@openssh\.com$/.test(keyAlgo);
}

/**
 * Decides one ssh2 authentication attempt. Accepts only `publickey` with a user certificate that
 * lib/sshcert verifies (type 'user', trusted CA, validity at `nowMs`, options) and, when the attempt is
 * signed, a signature by the certified key over ssh2's `ctx.blob`. An unsigned attempt is the client
 * asking whether the key would do: accepting it only makes ssh2 answer PK_OK, and the client must still
 * sign. Returns the verified certificate; the caller uses its principals and key id.
 */
export function verifyUserAuth(
  ctx: AuthContext,
  trustedUserCaKeys: Buffer[],
  nowMs: number,
  options: UserAuthOptions = {},
): Verdict<SshCertificate> {
  if (ctx.method !== 'publickey') return refuse('E_SSH_AUTH', `method "${ctx.method}" is not accepted`);
  if (!ctx.key.algo.endsWith(CERT_SUFFIX)) return refuse('E_SSH_AUTH', 'plain public keys are refused');
  const parsed = parseCertificate(ctx.key.data);
  if (!parsed.ok) return parsed;
  const verdict = verifyCertificate(parsed.value, {
    ...options,
    trustedCaKeys: trustedUserCaKeys,
    type: 'user',
    now: Math.floor(nowMs / 1000),
  });
  if (!verdict.ok) return verdict;
  const cert = verdict.value;
  if (!keyAlgorithmFits(ctx.key.algo, cert)) {
    return refuse('E_SSH_AUTH', `key algorithm ${ctx.key.algo} does not fit a ${cert.certAlgorithm}`);
  }
  if (ctx.signature === undefined || ctx.blob === undefined) return verdict;
  // The patched ssh2 hands certificate signatures over whole: string algorithm + string signature
  const sigAlgo = signatureAlgorithm(ctx.signature);
  if (sigAlgo !== ctx.key.algo.slice(0, -CERT_SUFFIX.length)) {
    return refuse('E_SSH_SIGNATURE', `signature algorithm ${sigAlgo} does not match ${ctx.key.algo}`);
  }
  const signed = verifySshSignature(cert.publicKeyBlob, ctx.signature, ctx.blob);
  return signed.ok ? verdict : signed;
}
