/**
 * Credentials at rest: client secrets are stored only as scrypt hashes (slow on purpose: a stolen database
 * must not yield usable secrets); access and enrollment tokens are 256-bit random values stored as SHA-256
 * (they are unguessable, so a fast hash is enough and lookups stay indexable).
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
}

/**
 * N=2^14, r=8 (16 MiB): ~150 ms per hash on a small 2-core server. Client secrets are 256-bit random values,
 * so their safety does not rest on the cost factor; the cost is kept moderate because every login pays it
 * on the CA's CPU (failed logins are limited per source address: unauthenticated.ts).
 */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 14, r: 8, p: 1 };
const KEY_LEN = 32;
const SALT_LEN = 16;

function scryptAsync(secret: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      secret,
      salt,
      KEY_LEN,
      { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

/** "scrypt$N$r$p$<salt b64>$<hash b64>" */
export async function hashSecret(secret: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await scryptAsync(secret, salt, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), key.toString('base64')].join('$');
}

/** Constant-time check of a secret against a stored hash; a malformed hash never matches. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every((n) => Number.isSafeInteger(n) && n > 0) || N > 2 ** 20) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length !== KEY_LEN) return false;
  const key = await scryptAsync(secret, salt, { N, r, p });
  return timingSafeEqual(key, expected);
}

/**
 * A hash of a valid shape that matches nothing: verifying an unknown client id against it costs as much as a
 * real check, so response time does not reveal which client ids exist.
 */
export async function decoyHash(params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  return hashSecret(randomBytes(32).toString('base64url'), params);
}

/**
 * A new random token or secret: 32 bytes, base64url (43 characters), never beginning with '-' (one draw in 64
 * would, and `--token -abc…` is then read as a flag); such a draw is made again, which costs under 0.03 bits.
 */
export function randomToken(): string {
  for (;;) {
    const token = randomBytes(32).toString('base64url');
    if (!token.startsWith('-')) return token;
  }
}

/** A random public id (client ids, grant ids): 16 bytes hex with a short prefix. */
export function randomId(prefix: string): string {
  return `${prefix}${randomBytes(16).toString('hex')}`;
}

/** The stored form of a token. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
