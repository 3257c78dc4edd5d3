/**
 * The unencrypted OpenSSH private key format (PROTOCOL.key, "openssh-key-v1"), which `ssh`,
 * `ssh-keygen` and ssh2 all read. Keys are written unencrypted because they live in a daemon's
 * private state directory; passphrase protection there would only move the secret next to it.
 */
import { createPrivateKey, type KeyObject, randomBytes } from 'node:crypto';
import { accept, GatewayError, refuse, type Verdict } from '../errors/codes.js';
import { ed25519Public, ed25519Seed, p256Point, p256Scalar, rsaParts } from './der.js';
import { isKeyAlgorithm, KeyUnsupportedError, keyAlgorithmOf, publicKeyBlob } from './keys.js';
import { SshReader, SshWriter, WireError } from './wire.js';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
const MAX_PRIVATE_KEY_CHARS = 64 * 1024;

function toBig(buf: Buffer): bigint {
  return buf.length === 0 ? 0n : BigInt(`0x${buf.toString('hex')}`);
}

function fromBig(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, 'hex');
}

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

/** Reads an unencrypted OpenSSH private key (ed25519, RSA, ECDSA P-256) into a Node KeyObject. */
export function parseOpenSshPrivateKey(text: string): Verdict<KeyObject> {
  if (text.length > MAX_PRIVATE_KEY_CHARS) return refuse('E_CERT_MALFORMED', 'private key file too large');
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) return refuse('E_CERT_MALFORMED', 'not an OpenSSH private key');
  const body = Buffer.from(text.slice(start + BEGIN.length, end).replace(/\s+/g, ''), 'base64');
  try {
    if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw new WireError('bad magic');
    const r = new SshReader(body.subarray(MAGIC.length));
    const cipher = r.text();
    const kdf = r.text();
    r.string();
    if (cipher !== 'none' || kdf !== 'none')
      return refuse('E_KEY_UNSUPPORTED', 'encrypted private keys are not supported');
    if (r.u32() !== 1) throw new WireError('exactly one key expected');
    const pub = r.string();
    const priv = new SshReader(r.string());
    r.end('private key file');
    const check1 = priv.u32();
    if (check1 !== priv.u32()) throw new WireError('check integers differ');
    const algorithm = priv.text();
    if (!isKeyAlgorithm(algorithm)) return refuse('E_KEY_UNSUPPORTED', `key type ${algorithm} is not supported`);
    let key: KeyObject;
    if (algorithm === 'ssh-ed25519') {
      const x = priv.string();
      const sk = priv.string();
      if (x.length !== 32 || sk.length !== 64) throw new WireError('bad ed25519 key lengths');
      key = jwkKey({ kty: 'OKP', crv: 'Ed25519', x: u(x), d: u(sk.subarray(0, 32)) });
    } else if (algorithm === 'ssh-rsa') {
      const [n, e, d, qi, p, q] = [priv.mpint(), priv.mpint(), priv.mpint(), priv.mpint(), priv.mpint(), priv.mpint()];
      const D = toBig(d);
      const dp = fromBig(D % (toBig(p) - 1n));
      const dq = fromBig(D % (toBig(q) - 1n));
      key = jwkKey({ kty: 'RSA', n: u(n), e: u(e), d: u(d), p: u(p), q: u(q), dp: u(dp), dq: u(dq), qi: u(qi) });
    } else {
      if (priv.text() !== 'nistp256') throw new WireError('curve mismatch');
      const q = priv.string();
      const d = priv.mpint();
      if (q.length !== 65 || d.length > 32) throw new WireError('bad nistp256 key lengths');
      const dd = Buffer.concat([Buffer.alloc(32 - d.length), d]);
      key = jwkKey({ kty: 'EC', crv: 'P-256', x: u(q.subarray(1, 33)), y: u(q.subarray(33)), d: u(dd) });
    }
    priv.string(); // comment
    // What is left is padding 1, 2, 3, ...; anything else means we misread the key.
    for (let i = 1; priv.remaining > 0; i++) if (priv.u8() !== i) throw new WireError('bad padding');
    if (!publicKeyBlob(key).equals(pub)) throw new WireError('public and private halves differ');
    return accept(key);
  } catch (err) {
    return refuse('E_CERT_MALFORMED', `OpenSSH private key: ${(err as Error).message}`);
  }
}

const u = (buf: Buffer): string => buf.toString('base64url');

function jwkKey(jwk: Record<string, string>): KeyObject {
  return createPrivateKey({ key: jwk, format: 'jwk' });
}
