/** OpenSSH one-line text form ("<algorithm> <base64> [comment]") of keys and certificates. */
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { blobAlgorithm } from './keys.js';

/** Upper bound on a key or certificate line, so hostile input cannot make us decode megabytes. */
export const MAX_LINE_CHARS = 64 * 1024;

export interface KeyLine {
  algorithm: string;
  blob: Buffer;
  comment: string;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Splits and decodes one key line; the algorithm word must equal the name inside the blob. */
export function parseKeyLine(text: string): Verdict<KeyLine> {
  if (text.length > MAX_LINE_CHARS) return refuse('E_CERT_MALFORMED', 'key line too long');
  const m = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/s.exec(text);
  if (!m) return refuse('E_CERT_MALFORMED', 'expected "<algorithm> <base64> [comment]"');
  const [, algorithm = '', b64 = '', comment] = m; // groups 1 and 2 always take part in a match
  if (!BASE64.test(b64) || b64.length % 4 !== 0) return refuse('E_CERT_MALFORMED', 'invalid base64');
  const blob = Buffer.from(b64, 'base64');
  // Buffer.from ignores bad padding bits; a canonical re-encoding proves the text was exact.
  if (blob.toString('base64') !== b64) return refuse('E_CERT_MALFORMED', 'non-canonical base64');
  const inner = blobAlgorithm(blob);
  if (inner !== algorithm) return refuse('E_CERT_MALFORMED', `line says ${algorithm}, blob says ${inner ?? '?'}`);
  return accept({ algorithm, blob, comment: comment ?? '' });
}

/** OpenSSH text form of a public key blob. */
export function formatPublicKey(blob: Buffer, comment?: string): string {
  const algorithm = blobAlgorithm(blob);
  if (algorithm === undefined) throw new RangeError('not an SSH key blob');
  return `${algorithm} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}
