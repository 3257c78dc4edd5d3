/**
 * HTTP plumbing for the CA API: bounded body reading, JSON replies, and the one mapping from error codes to
 * HTTP statuses. No decisions here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorCode, ErrorCodes, refuse, type Verdict } from '../errors/codes.js';
import type { ErrorBody } from '../protocol/api.js';

/** The HTTP status for a refusal code (400 schema, 401 auth, 403 forbidden, 404, 409, 413, 429). */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case 'E_REQUEST_INVALID':
    case 'E_REQUEST_MALFORMED':
    case 'E_CSR_INVALID':
    case 'E_KEY_UNSUPPORTED':
    case 'E_CERT_WEAK_ALGORITHM':
    case 'E_IDENTITY_MALFORMED':
      return 400;
    case 'E_REQUEST_TOO_LARGE':
      return 413;
    case 'E_AUTH_REQUIRED':
    case 'E_AUTH_INVALID':
    case 'E_TOKEN_EXPIRED':
    case 'E_TOKEN_REVOKED':
    case 'E_TOKEN_USED':
    case 'E_CERT_EXPIRED':
    case 'E_CERT_NOT_YET_VALID':
    case 'E_CERT_UNTRUSTED':
    case 'E_CERT_SIGNATURE':
    case 'E_CERT_WRONG_TYPE':
    case 'E_CERT_IDENTITY':
    case 'E_CERT_USAGE':
    case 'E_CERT_MALFORMED':
    case 'E_CERT_REVOKED':
    case 'E_CERT_CRITICAL_OPTION':
    case 'E_CERT_CHAIN_TOO_LONG':
    case 'E_CERT_WRONG_PRINCIPAL':
    case 'E_CERT_SUPERSEDED':
      return 401;
    case 'E_FORBIDDEN':
    case 'E_ORG_MISMATCH':
    case 'E_POLICY_DENIED':
    case 'E_SUBJECT_REVOKED':
      return 403;
    case 'E_NOT_FOUND':
      return 404;
    case 'E_CONFLICT':
      return 409;
    case 'E_RATE_LIMITED':
      return 429;
    case 'E_TIMEOUT':
      return 408;
    case 'E_LIMIT':
    case 'E_STORE_UNAVAILABLE':
      return 503;
    default:
      return 500;
  }
}

/**
 * Reads a request body of at most `limit` bytes. A declared Content-Length above the limit is refused before
 * reading; a body that grows past it is refused as soon as it does (the rest is never buffered).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Verdict<Buffer>> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.resolve(refuse('E_REQUEST_TOO_LARGE', `body of ${declared} bytes; the limit is ${limit}`));
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (v: Verdict<Buffer>) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      resolve(v);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish(refuse('E_REQUEST_TOO_LARGE', `body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish({ ok: true, value: Buffer.concat(chunks, size) }));
    req.once('error', () => finish(refuse('E_REQUEST_MALFORMED', 'request body was cut off')));
    req.once('aborted', () => finish(refuse('E_REQUEST_MALFORMED', 'request body was cut off')));
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, close = false): void {
  if (res.headersSent || res.destroyed) return;
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(text);
}

/** `{code, message}` with the code's status; 429 gets Retry-After when the reason says how long. */
export function sendError(res: ServerResponse, code: ErrorCode, reason: string, close = false): void {
  const status = statusFor(code);
  if (status === 429) {
    const wait = /retry in (\d+) s/.exec(reason)?.[1];
    if (wait) res.setHeader('retry-after', wait);
  }
  const message = reason ? `${ErrorCodes[code]}: ${reason}` : ErrorCodes[code];
  sendJson(res, status, { code, message } satisfies ErrorBody, close);
}

/** The bearer token of an Authorization header, if any. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+([A-Za-z0-9_-]{16,256})\s*$/.exec(h);
  return m ? m[1] : '';
}
