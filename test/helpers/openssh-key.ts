/**
 * The read side of the OpenSSH private key format (PROTOCOL.key, "openssh-key-v1"), for tests: the daemons only
 * write such keys (lib/sshcert/privkey.ts toOpenSshPrivateKey); tests read ssh-keygen's keys and check that ours
 * read back, and the fuzz suite round-trips the writer through it.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { accept, refuse, type Verdict } from '../../lib/errors/codes.js';
import { isKeyAlgorithm, publicKeyBlob } from '../../lib/sshcert/keys.js';
import { SshReader, WireError } from '../../lib/sshcert/wire.js';

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
