/**
 * The patched ssh2 (patches/ssh2+1.17.0.patch) as the rest of sshwire sees it: its types, the options the
 * patch adds, and the algorithm lists both our client and our server use.
 *
 * The patch adds, all opt-in:
 *  - `setPaddingPool(bytes)` in `ssh2/lib/protocol/crypto.js`: packet padding drawn from a pool of random
 *    bytes (used here, below);
 *  - `channelWindow`, `channelPacketSize`, `channelPackWrites` (client and server config): the window and the
 *    largest packet each channel grants its peer (ssh2 hard-codes 2 MiB and 32 KiB), and queued channel
 *    writes packed into full packets. Measured without a gain on loopback (docs/performance.md): not used;
 *  - `certificate` beside `privateKey` (client config and `publickey` auth methods): user certificate auth;
 *  - `{ key, certificate }` entries in a Server's `hostKeys`: host certificates;
 *  - the `*-cert-v01@openssh.com` names in `algorithms.serverHostKey` (client): accept host certificates,
 *    whose blob then reaches `hostVerifier`.
 */
import { createRequire } from 'node:module';
import ssh2 from 'ssh2';

declare module 'ssh2' {
  interface ConnectConfig {
    /** OpenSSH user certificate for `privateKey`: blob or text line (patched ssh2). */
    certificate?: Buffer | string;
  }
  interface PublicKeyAuthMethod {
    /** OpenSSH user certificate for `key` (patched ssh2). */
    certificate?: Buffer | string;
  }
  interface EncryptedPrivateKey {
    /** OpenSSH host certificate for `key` (patched ssh2). */
    certificate?: Buffer | string;
  }
}

export const Client = ssh2.Client;
export type Client = ssh2.Client;
export const Server = ssh2.Server;
export type Server = ssh2.Server;
export type {
  AuthContext,
  ClientChannel,
  ClientInfo,
  Connection,
  ServerChannel,
  TcpConnectionDetails,
} from 'ssh2';

/**
 * Random bytes ssh2 draws each packet's padding from (the patch's `setPaddingPool`, process-wide): one
 * randomFillSync per 64 KiB instead of one per packet, which cost 7–13 % of the proxy's busy time under bulk
 * transfer (docs/performance.md). The padding stays CSPRNG output, encrypted with the packet as before.
 */
export const PADDING_POOL_BYTES = 64 * 1024;

/** Fails loudly when node_modules holds an unpatched ssh2 (the options above would be silently ignored). */
function assertPatched(): void {
  // Written as createRequire(import.meta.url)(…) each time: the standalone build turns exactly that into require(…).
  const keyParser = createRequire(import.meta.url)('ssh2/lib/protocol/keyParser.js') as Record<string, unknown>;
  const crypto = createRequire(import.meta.url)('ssh2/lib/protocol/crypto.js') as {
    setPaddingPool?: (bytes: number) => void;
  };
  if (typeof keyParser['parseCertificate'] !== 'function' || typeof crypto.setPaddingPool !== 'function') {
    throw new Error('ssh2 lacks its patch (patches/ssh2+1.17.0.patch): run `npx patch-package`');
  }
  crypto.setPaddingPool(PADDING_POOL_BYTES);
}
assertPatched();

export const CERT_SUFFIX = '-cert-v01@openssh.com';

/** Host certificate algorithms a client accepts, best first (the key types lib/sshcert supports). */
export const CERT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'rsa-sha2-512-cert-v01@openssh.com',
  'rsa-sha2-256-cert-v01@openssh.com',
] as const;

/**
 * Transport algorithms for both sides: no SHA-1 anywhere, no CBC, no compression (a peer that offers only
 * weaker ones fails the handshake instead of being downgraded).
 */
export const TRANSPORT_ALGORITHMS = {
  kex: [
    'curve25519-sha256',
    'curve25519-sha256@libssh.org',
    'ecdh-sha2-nistp256',
    'ecdh-sha2-nistp384',
    'ecdh-sha2-nistp521',
    'diffie-hellman-group16-sha512',
    'diffie-hellman-group18-sha512',
    'diffie-hellman-group14-sha256',
  ],
  cipher: [
    'aes128-gcm@openssh.com',
    'aes256-gcm@openssh.com',
    'chacha20-poly1305@openssh.com',
    'aes128-ctr',
    'aes192-ctr',
    'aes256-ctr',
  ],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512'],
  compress: ['none'],
} satisfies ssh2.Algorithms;

/** Client algorithms: the transport list above, and host certificates only. */
export const CLIENT_ALGORITHMS: ssh2.Algorithms = {
  ...TRANSPORT_ALGORITHMS,
  // The patch extends ssh2's runtime list; @types/ssh2 has a closed union for these names.
  serverHostKey: [...CERT_HOST_KEY_ALGORITHMS] as unknown as ssh2.ServerHostKeyAlgorithm[],
};

/**
 * End-of-write on a server-side channel, keeping it open the other way (half-close; lib/protocol/splice.ts
 * `EndWrites`). ssh2's server channels send CHANNEL_CLOSE right after the EOF when their write side ends
 * (Channel.js onFinish), which tears down both directions: the peer's reply still in flight is lost. Here the
 * EOF follows the bytes already queued (a zero-length write's callback runs after theirs) and no CLOSE is sent;
 * destroy() sends it later, when both directions are done.
 */
export function endChannelWrites(channel: ssh2.ServerChannel, flushed: () => void): void {
  channel.write(Buffer.alloc(0), () => {
    channel.eof();
    flushed();
  });
}

/**
 * Is this channel closed or closing, by the peer (CHANNEL_CLOSE received) or on this side (destroy(), close())?
 * A channel can be confirmed and closed in one read from the socket: whoever awaited its open then holds a dead
 * channel. (ssh2's Channel.destroy() sends CHANNEL_CLOSE without marking the stream destroyed: its states say.)
 */
export function channelGone(channel: ssh2.ServerChannel | ssh2.ClientChannel): boolean {
  const states = channel as unknown as { incoming?: { state?: string }; outgoing?: { state?: string } };
  return (
    channel.destroyed ||
    states.incoming?.state === 'closed' ||
    states.outgoing?.state === 'closing' ||
    states.outgoing?.state === 'closed'
  );
}
