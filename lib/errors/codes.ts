/**
 * Stable error codes shared by logs, metrics, CLI exit codes, API responses and tests.
 * A code, once published, keeps its meaning: add new codes, never repurpose old ones.
 */
export const ErrorCodes = {
  // certificates (X.509 and OpenSSH alike)
  E_CERT_EXPIRED: 'certificate has expired',
  E_CERT_NOT_YET_VALID: 'certificate is not yet valid',
  E_CERT_UNTRUSTED: 'certificate does not chain to a trusted authority',
  E_CERT_SIGNATURE: 'certificate signature is invalid (tampered or wrong issuer key)',
  E_CERT_WRONG_TYPE: 'certificate is of the wrong type for this use',
  E_CERT_WRONG_PRINCIPAL: 'certificate does not name the required principal',
  E_CERT_IDENTITY: 'certificate identity (URI SAN) does not match',
  E_CERT_USAGE: 'certificate key usage or extended key usage does not allow this use',
  E_CERT_CRITICAL_OPTION: 'certificate carries an unknown critical option or extension',
  E_CERT_MALFORMED: 'certificate could not be parsed',
  E_CERT_REVOKED: 'certificate has been revoked',
  E_CERT_WEAK_ALGORITHM: 'certificate uses a refused algorithm',
  E_CERT_CHAIN_TOO_LONG: 'certificate chain exceeds the allowed path length',
  E_CSR_INVALID: 'certificate signing request is malformed or its signature is invalid',
  E_KEY_UNSUPPORTED: 'key type is not supported',
  // access grants
  E_GRANT_MISSING: 'client certificate carries no access grant',
  E_GRANT_MALFORMED: 'access grant could not be parsed',
  E_GRANT_EXPIRED: 'access grant has expired',
  E_GRANT_TARGET: 'access grant does not cover this target',
  E_GRANT_GATEWAY: 'access grant names another gateway',
  E_GRANT_ORG: 'access grant belongs to another organization',
  // SSH transport
  E_SSH_AUTH: 'SSH authentication failed',
  E_SSH_HOST_CERT: 'SSH host certificate refused',
  E_SSH_SIGNATURE: 'SSH signature is invalid',
  // runtime and local state (lib/runtime, lib/store)
  E_CONFIG_INVALID: 'configuration is invalid',
  E_STORE_VERSION: 'state database schema is not compatible with this version',
  E_STORE_PERMISSIONS: 'state directory or file has unsafe permissions',
  E_STORE_UNAVAILABLE: 'the CA database (PostgreSQL) cannot be reached',
  E_SECRET_FILE_MODE: 'secret file is readable by group or others',
  E_SEALED_TAMPERED: 'sealed value failed authentication (tampered, truncated or wrong context)',
  E_SEALED_MALFORMED: 'sealed value is malformed or of an unknown version',
  E_SEALED_KEY: 'sealing key is missing, unreadable or of the wrong size',
  // identities (lib/protocol/identity)
  E_IDENTITY_MALFORMED: 'identity URI is malformed',
  // CA API, tokens and policy (lib/ca)
  E_REQUEST_INVALID: 'request body does not match the schema',
  E_REQUEST_TOO_LARGE: 'request body is too large',
  E_REQUEST_MALFORMED: 'request body is not valid JSON',
  E_AUTH_REQUIRED: 'authentication is required',
  E_AUTH_INVALID: 'credentials are invalid',
  E_TOKEN_EXPIRED: 'token has expired',
  E_TOKEN_REVOKED: 'token has been revoked',
  E_TOKEN_USED: 'one-time token was already used',
  E_FORBIDDEN: 'caller may not do this',
  E_NOT_FOUND: 'no such object',
  E_CONFLICT: 'object already exists',
  E_RATE_LIMITED: 'too many attempts; try again later',
  E_POLICY_DENIED: 'no policy rule allows this access',
  E_ORG_MISMATCH: 'object belongs to another organization',
  E_SUBJECT_REVOKED: 'gateway, proxy or identity has been revoked',
  E_CERT_SUPERSEDED: 'certificate was already renewed; only its successor may renew or be used',
  E_FEED_STALE: 'the CA revocation feed has not been read successfully for too long',
  E_ROTATION_MISSED: 'this component was away while a rotation retired the CA that signed its certificate',
  E_ROTATION_PENDING: 'a CA rotation cannot move on yet (components to acknowledge, or certificates to expire)',
  E_FEED_MALFORMED: 'the CA revocation feed answer is not a well-formed feed',
  // routing and streams (lib/proxy, lib/gateway, lib/client)
  E_ROUTE_FORBIDDEN: 'proxy refuses to route this connection',
  E_GATEWAY_OFFLINE: 'gateway has no tunnel on this proxy',
  E_TARGET_NOT_ALLOWED: 'target is not in the gateway allowlist',
  E_TARGET_UNREACHABLE: 'gateway could not reach the target',
  E_LIMIT: 'a connection or stream limit was reached',
  E_QUOTA_EXCEEDED: 'the organization holds its quota of tunnels or streams on this shared proxy',
  E_TIMEOUT: 'peer was too slow',
  // platform client (lib/client)
  E_PROXY_UNREACHABLE: 'proxy could not be reached (connection refused, reset or closed early)',
  E_STREAM_CLOSED:
    'gateway closed the stream without a reason (it refused the grant, mode or target, or the target closed)',
  E_ADDRESS_IN_USE: 'local address is already in use (another program listens on it)',
  // CA daemon (lib/ca)
  E_INTERNAL: 'internal error; see the server log',
  E_CA_UNREACHABLE: 'CA API could not be reached (connection refused, reset, or closed early)',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * Is this text one of our codes? An own-property test: `in` would also admit "constructor", "toString" and the
 * other names every object inherits, letting a peer's status line or error body pass them off as codes.
 */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value);
}

/** An error that carries a stable code; `detail` is for humans and may change. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ErrorCodes[code]}: ${detail}` : ErrorCodes[code], options);
    this.name = 'GatewayError';
    this.code = code;
  }
}

/** The outcome of a pure security decision: accepted with a value, or refused with a code and a reason. */
export type Verdict<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; reason: string };

export function accept<T>(value: T): Verdict<T> {
  return { ok: true, value };
}

export function refuse<T = never>(code: ErrorCode, reason: string): Verdict<T> {
  return { ok: false, code, reason };
}

/** Unwraps a verdict, throwing a GatewayError on refusal. */
export function unwrap<T>(verdict: Verdict<T>): T {
  if (verdict.ok) return verdict.value;
  throw new GatewayError(verdict.code, verdict.reason);
}
