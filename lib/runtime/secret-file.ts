/**
 * Reading a secret from a file (enrollment tokens, client secrets, sealing keys): the one place that decides
 * whether a secret file is private enough to use. As OpenSSH refuses a private key that group or others may
 * read, a secret file with any group or other permission bit (mode & 0o077) is refused with E_SECRET_FILE_MODE,
 * naming the file, its mode and the `chmod 600` that fixes it. The secret is not read first: a refusal
 * never depends on the content.
 */
import { closeSync, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { GatewayError } from '../errors/codes.js';

/** The path that means standard input (`--token-file -`). */
export const STDIN_PATH = '-';

/** Secrets are short; anything longer is not one of ours (and is not read whole). */
const MAX_SECRET_BYTES = 64 * 1024;

/** The permission bits a secret file may not have: any access by group or others. */
export const UNSAFE_SECRET_MODE_BITS = 0o077;

/** `path` as a shell word, for a command the operator can paste. */
function shellWord(path: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

/** "0644" */
export function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Why a secret file with these permission bits is refused, or undefined when it is private. Pure: the path is
 * only named in the text.
 */
export function secretFileModeProblem(path: string, mode: number): string | undefined {
  if ((mode & UNSAFE_SECRET_MODE_BITS) === 0) return undefined;
  return (
    `${path} has mode ${modeText(mode)} (refused, as OpenSSH refuses such a private key); ` +
    `fix it with: chmod 600 ${shellWord(path)}`
  );
}

/** Throws E_SECRET_FILE_MODE when `stat` (of the open file, not the path) lets group or others in. */
export function assertPrivateFile(path: string, stat: Pick<Stats, 'mode'>): void {
  const problem = secretFileModeProblem(path, stat.mode);
  if (problem) throw new GatewayError('E_SECRET_FILE_MODE', problem);
}

export interface SecretSource {
  /** What the secret is, for messages: "--token-file", "--client-secret-file". */
  what: string;
  /** Standard input, injected for tests; default fd 0. */
  readStdin?: () => Buffer;
}

/**
 * The secret held in `path` (trimmed text), or on standard input when `path` is "-". A file must be private
 * (assertPrivateFile, judged on the opened descriptor so a swapped path cannot slip past), a regular file or
 * a pipe, non-empty and at most 64 KiB. Standard input is the caller's choice of channel and is not judged by
 * mode. Refusals: E_SECRET_FILE_MODE for permissions, E_CONFIG_INVALID for the rest.
 */
export function readSecretFile(path: string, source: SecretSource): string {
  if (path === STDIN_PATH) {
    let data: Buffer;
    try {
      data = (source.readStdin ?? (() => readFileSync(0)))();
    } catch (err) {
      throw new GatewayError('E_CONFIG_INVALID', `${source.what} -: cannot read standard input (${errnoOf(err)})`);
    }
    return secretText(data, `${source.what} - (standard input)`);
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new GatewayError('E_CONFIG_INVALID', `${source.what} ${path}: cannot open (${errnoOf(err)})`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile() && !stat.isFIFO()) {
      throw new GatewayError('E_CONFIG_INVALID', `${source.what} ${path}: not a regular file`);
    }
    assertPrivateFile(path, stat);
    if (stat.size > MAX_SECRET_BYTES) {
      throw new GatewayError('E_CONFIG_INVALID', `${source.what} ${path}: ${stat.size} bytes is not a secret`);
    }
    return secretText(readFileSync(fd), `${source.what} ${path}`);
  } finally {
    closeSync(fd);
  }
}

function secretText(data: Buffer, where: string): string {
  if (data.length > MAX_SECRET_BYTES) {
    throw new GatewayError('E_CONFIG_INVALID', `${where}: more than ${MAX_SECRET_BYTES} bytes is not a secret`);
  }
  const text = data.toString('utf8').trim();
  if (text === '') throw new GatewayError('E_CONFIG_INVALID', `${where}: empty`);
  return text;
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
