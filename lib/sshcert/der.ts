/**
 * Key material out of Node KeyObjects through DER, never through `export({ format: 'jwk' })`.
 * Why: on Node 20 a JWK export of a key made by generateKeyPairSync can deadlock. ExportJWK holds the
 * key's mutex while allocating strings; a GC during that allocation runs the finished KeyGenJob's
 * destructor, which takes the same mutex (reproduced here: 2 of 2 runs hang; DER export: 0 of 8).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';

interface Tlv {
  tag: number;
  body: Buffer;
  next: number;
}

function tlv(buf: Buffer, pos: number): Tlv {
  const tag = buf[pos];
  let len = buf[pos + 1];
  if (tag === undefined || len === undefined) throw new RangeError('truncated DER');
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 4) throw new RangeError('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] ?? 0);
    start += n;
  }
  const end = start + len;
  if (end > buf.length) throw new RangeError('truncated DER');
  return { tag, body: buf.subarray(start, end), next: end };
}

/** The elements of a DER SEQUENCE. */
function sequence(buf: Buffer): Tlv[] {
  const outer = tlv(buf, 0);
  if (outer.tag !== 0x30) throw new RangeError('expected a DER SEQUENCE');
  const items: Tlv[] = [];
  for (let pos = 0; pos < outer.body.length; ) {
    const item = tlv(outer.body, pos);
    items.push(item);
    pos = item.next;
  }
  return items;
}

/** Unsigned magnitude of a DER INTEGER (drops the sign-padding zero). */
function integer(t: Tlv | undefined): Buffer {
  if (t?.tag !== 0x02) throw new RangeError('expected a DER INTEGER');
  let i = 0;
  while (i < t.body.length - 1 && t.body[i] === 0) i++;
  return t.body.subarray(i);
}

export interface RsaParts {
  n: Buffer;
  e: Buffer;
  d?: Buffer;
  p?: Buffer;
  q?: Buffer;
  qi?: Buffer;
}

const pub = (key: KeyObject): KeyObject => (key.type === 'private' ? createPublicKey(key) : key);

/** The raw 32-byte Ed25519 public key. */
export function ed25519Public(key: KeyObject): Buffer {
  const spki = pub(key).export({ type: 'spki', format: 'der' });
  return spki.subarray(spki.length - 32);
}

/** The 32-byte Ed25519 seed (the private key as RFC 8032 defines it). */
export function ed25519Seed(key: KeyObject): Buffer {
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  return pkcs8.subarray(pkcs8.length - 32);
}

/** The uncompressed P-256 point (0x04 || x || y). */
export function p256Point(key: KeyObject): Buffer {
  const spki = pub(key).export({ type: 'spki', format: 'der' });
  return spki.subarray(spki.length - 65);
}

/** The P-256 private scalar, left-padded to 32 bytes. */
export function p256Scalar(key: KeyObject): Buffer {
  const [, d] = sequence(key.export({ type: 'sec1', format: 'der' }));
  if (d?.tag !== 0x04) throw new RangeError('expected the EC private key OCTET STRING');
  return Buffer.concat([Buffer.alloc(32 - d.body.length), d.body]);
}

/** RSA public (n, e) or, for a private key, the CRT parts OpenSSH stores. */
export function rsaParts(key: KeyObject): RsaParts {
  if (key.type !== 'private') {
    const [n, e] = sequence(key.export({ type: 'pkcs1', format: 'der' }));
    return { n: integer(n), e: integer(e) };
  }
  // RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qi }
  const f = sequence(key.export({ type: 'pkcs1', format: 'der' }));
  return {
    n: integer(f[1]),
    e: integer(f[2]),
    d: integer(f[3]),
    p: integer(f[4]),
    q: integer(f[5]),
    qi: integer(f[8]),
  };
}
