/**
 * The unencrypted OpenSSH private key format (PROTOCOL.key, "openssh-key-v1"), which `ssh`,
 * `ssh-keygen` and ssh2 all read. Keys are written unencrypted because they live in a daemon's
 * private state directory; passphrase protection there would only move the secret next to it.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { GatewayError } from '../errors/codes.js';
import { ed25519Public, ed25519Seed, p256Point, p256Scalar, rsaParts } from './der.js';
import { KeyUnsupportedError, keyAlgorithmOf, publicKeyBlob } from './keys.js';
import { SshWriter } from './wire.js';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';

/** OpenSSH private key format ("-----BEGIN OPENSSH PRIVATE KEY-----"), unencrypted, as ssh2 and ssh accept it. */
export function toOpenSshPrivateKey(key: KeyObject, comment = ''): string {
  if (key.type !== 'private') throw new GatewayError('E_KEY_UNSUPPORTED', 'a private key is required');
  let algorithm: ReturnType<typeof keyAlgorithmOf>;
  try {
    algorithm = keyAlgorithmOf(key);
  } catch (err) {
    if (err instanceof KeyUnsupportedError) throw new GatewayError('E_KEY_UNSUPPORTED', err.message);
    throw err;
  }
  const pub = publicKeyBlob(key);
  const check = randomBytes(4).readUInt32BE(0);
  const priv = new SshWriter().u32(check).u32(check).string(algorithm);
  if (algorithm === 'ssh-ed25519') {
    const x = ed25519Public(key);
    // OpenSSH stores the 64-byte "secret key" of the ref10 API: seed followed by the public key.
    priv.string(x).string(Buffer.concat([ed25519Seed(key), x]));
  } else if (algorithm === 'ssh-rsa') {
    const r = rsaParts(key);
    priv.mpint(r.n).mpint(r.e).mpint(r.d!).mpint(r.qi!).mpint(r.p!).mpint(r.q!);
  } else {
    priv.string('nistp256').string(p256Point(key)).mpint(p256Scalar(key));
  }
  priv.string(comment);
  const unpadded = priv.toBuffer();
  // Cipher "none" has a block size of 8; padding bytes are 1, 2, 3, ... as PROTOCOL.key specifies.
  const padLen = (8 - (unpadded.length % 8)) % 8;
  const padding = Buffer.from(Array.from({ length: padLen }, (_, i) => i + 1));
  const body = new SshWriter()
    .raw(MAGIC)
    .string('none')
    .string('none')
    .string(Buffer.alloc(0))
    .u32(1)
    .string(pub)
    .string(Buffer.concat([unpadded, padding]))
    .toBuffer();
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return `${BEGIN}\n${lines.join('\n')}\n${END}\n`;
}
