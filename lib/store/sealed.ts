/**
 * Sealing secrets at rest (private keys, tokens) before they reach SQLite: AES-256-GCM under a 32-byte key
 * that lives outside the database, in a 0600 key file or a systemd credential. A stolen database (or a
 * backup of it) then holds no usable secret.
 *
 * Sealed value, version 1:  0x01 | key id (8) | nonce (12) | ciphertext | GCM tag (16)
 * The additional authenticated data binds the version, the key id and a caller-chosen context (e.g.
 * "gateway:tls-private-key"), so a sealed value copied to another row or purpose fails to open.
 * Nonces are random (96 bits): fine for the few thousand values a daemon seals under one key.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GatewayError } from '../errors/codes.js';
import { assertPrivateFile } from '../runtime/secret-file.js';
import { prepareStateDirectory } from './db.js';

const VERSION = 0x01;
const KEY_BYTES = 32;
const ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + ID_BYTES + NONCE_BYTES;

// Key material by key, reachable only from this module (not a property anyone can read or log).
const keyObjects = new WeakMap<SealingKey, KeyObject>();

/** A loaded sealing key. The material stays in a KeyObject outside the instance: never printed by accident. */
export class SealingKey {
  /** First 8 bytes of SHA-256 over a label and the key: names the key without revealing it. */
  readonly id: Buffer;
  /** Where it came from, for logs: "credential /run/credentials/…" or "file /var/lib/…". */
  readonly source: string;

  constructor(material: Buffer, source: string) {
    if (material.length !== KEY_BYTES) {
      throw new GatewayError('E_SEALED_KEY', `${source}: ${material.length} bytes, expected ${KEY_BYTES}`);
    }
    this.id = createHash('sha256').update('infisical sealing key id\0').update(material).digest().subarray(0, ID_BYTES);
    this.source = source;
    keyObjects.set(this, createSecretKey(material));
  }

  /** Hex key id for logs. */
  get idHex(): string {
    return this.id.toString('hex');
  }
}

/** Raw 32 bytes, or 64 hex characters, or base64 of 32 bytes (systemd-creds and env files are text). */
function decodeKey(data: Buffer, source: string): SealingKey {
  if (data.length === KEY_BYTES) return new SealingKey(data, source);
  const text = data.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return new SealingKey(Buffer.from(text, 'hex'), source);
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) return new SealingKey(Buffer.from(text, 'base64'), source);
  throw new GatewayError(
    'E_SEALED_KEY',
    `${source}: expected 32 raw bytes, 64 hex characters or base64 of 32 bytes (got ${data.length} bytes)`,
  );
}

/** Creates the key file atomically (temp file, fsync, link): a crash never leaves a short key behind. */
function createKeyFile(path: string): void {
  prepareStateDirectory(dirname(path));
  const temp = `${path}.tmp-${process.pid}`;
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, randomBytes(KEY_BYTES));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, path); // fails if another process created it first: theirs wins
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(temp);
  }
  const dirFd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

function readKeyFile(path: string): SealingKey {
  const source = `file ${path}`;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new GatewayError('E_SEALED_KEY', `${source}: cannot open (${(err as NodeJS.ErrnoException).code})`, {
      cause: err,
    });
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new GatewayError('E_SEALED_KEY', `${source}: not a regular file`);
    assertPrivateFile(path, stat);
    if (stat.size > 1024) throw new GatewayError('E_SEALED_KEY', `${source}: ${stat.size} bytes, expected 32`);
    return decodeKey(readFileSync(fd), source);
  } finally {
    closeSync(fd);
  }
}

export interface SealingKeyOptions {
  /** Key file, e.g. /var/lib/infisical-gateway/sealing.key; created 0600 when absent (unless create is false). */
  keyFile: string;
  /** Name of the systemd credential (LoadCredential=NAME:…); default "sealing-key". */
  credentialName?: string;
  /** Holds CREDENTIALS_DIRECTORY; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Create the key file when absent; default true. */
  create?: boolean;
}

/**
 * Loads the sealing key: `$CREDENTIALS_DIRECTORY/<credentialName>` when present (systemd owns its
 * permissions), else the key file, created with a fresh random key if absent. A key file readable by group
 * or others is refused (E_SECRET_FILE_MODE), one of the wrong size too (E_SEALED_KEY), rather than used.
 */
export function loadSealingKey(options: SealingKeyOptions): SealingKey {
  const env = options.env ?? process.env;
  const credentials = env['CREDENTIALS_DIRECTORY'];
  if (credentials) {
    const path = join(credentials, options.credentialName ?? 'sealing-key');
    let data: Buffer | undefined;
    try {
      data = readFileSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new GatewayError('E_SEALED_KEY', `credential ${path}: cannot read`, { cause: err });
      }
    }
    if (data) return decodeKey(data, `credential ${path}`);
  }
  try {
    return readKeyFile(options.keyFile);
  } catch (err) {
    const missing = err instanceof GatewayError && /cannot open \(ENOENT\)/.test(err.message);
    if (!missing || options.create === false) throw err;
  }
  createKeyFile(options.keyFile);
  return readKeyFile(options.keyFile);
}

/** The key id a sealed value names, or undefined if it is not a sealed value of a known version. */
export function sealedKeyId(sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < HEADER_BYTES + TAG_BYTES || sealed[0] !== VERSION) return undefined;
  return Buffer.from(sealed.subarray(1, 1 + ID_BYTES));
}

function aad(header: Uint8Array, context: string): Buffer {
  return Buffer.concat([header.subarray(0, 1 + ID_BYTES), Buffer.from(`\0infisical-sealed\0${context}`, 'utf8')]);
}

/** Seals with the current key; opens with the current key or any previous one (key rotation). */
export class Sealer {
  readonly current: SealingKey;
  readonly #byId: Map<string, SealingKey>;

  constructor(current: SealingKey, previous: readonly SealingKey[] = []) {
    this.current = current;
    this.#byId = new Map([...previous, current].map((key) => [key.idHex, key]));
  }

  seal(plaintext: Uint8Array | string, context: string): Buffer {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = VERSION;
    this.current.id.copy(header, 1);
    randomBytes(NONCE_BYTES).copy(header, 1 + ID_BYTES);
    const cipher = createCipheriv('aes-256-gcm', keyObjects.get(this.current)!, header.subarray(1 + ID_BYTES), {
      authTagLength: TAG_BYTES,
    });
    cipher.setAAD(aad(header, context));
    const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
    return Buffer.concat([header, cipher.update(data), cipher.final(), cipher.getAuthTag()]);
  }

  /**
   * Opens a sealed value for the same context. Refusals: E_SEALED_MALFORMED (too short, unknown version),
   * E_SEALED_KEY (sealed under a key not loaded), E_SEALED_TAMPERED (any altered byte or another context).
   */
  open(sealed: Uint8Array, context: string): Buffer {
    if (sealed.length < HEADER_BYTES + TAG_BYTES) {
      throw new GatewayError('E_SEALED_MALFORMED', `${sealed.length} bytes is shorter than any sealed value`);
    }
    if (sealed[0] !== VERSION) throw new GatewayError('E_SEALED_MALFORMED', `unknown version ${sealed[0]}`);
    const idHex = Buffer.from(sealed.subarray(1, 1 + ID_BYTES)).toString('hex');
    const key = this.#byId.get(idHex);
    if (!key) {
      throw new GatewayError(
        'E_SEALED_KEY',
        `sealed under key ${idHex}, which is not loaded (current ${this.current.idHex})`,
      );
    }
    const nonce = sealed.subarray(1 + ID_BYTES, HEADER_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', keyObjects.get(key)!, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(sealed, context));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch (err) {
      throw new GatewayError('E_SEALED_TAMPERED', `context "${context}"`, { cause: err });
    }
  }

  openText(sealed: Uint8Array, context: string): string {
    return this.open(sealed, context).toString('utf8');
  }

  /** True when the value was sealed under a previous key and should be re-sealed under the current one. */
  needsReseal(sealed: Uint8Array): boolean {
    const id = sealedKeyId(sealed);
    return id !== undefined && !id.equals(this.current.id);
  }
}
