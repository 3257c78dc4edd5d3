/** Row shapes of the CA database (store-schema.ts) and their mapping from SQLite rows. */
import type { GrantMode } from '../pki/grant.js';

export type Raw = Record<string, unknown>;

/** '' in the database, null in the domain: "the instance, not an org". */
export const orgKey = (orgId: string | null | undefined): string => orgId ?? '';
export const orgOf = (key: string): string | null => (key === '' ? null : key);

export interface AuthorityRow {
  id: string;
  orgId: string | null;
  purpose: string;
  kind: 'x509' | 'ssh' | 'ed25519';
  public: string;
  sealedKey: Buffer | null;
  createdAt: number;
  notAfter: number | null;
}
export interface IdentityRow {
  rowId: number;
  orgId: string | null;
  identityId: string;
  role: 'admin' | 'org-admin' | 'member';
  groups: string[];
  clientId: string;
  secretHash: string;
  createdAt: number;
  revokedAt: number | null;
}
export interface EnrollmentTokenRow {
  tokenHash: string;
  orgId: string | null;
  kind: 'gateway' | 'proxy';
  subjectId: string;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}
export interface GatewayRow {
  orgId: string;
  gatewayId: string;
  uri: string;
  enrolledAt: number;
  renewedAt: number | null;
  revokedAt: number | null;
}
export interface ProxyRow {
  orgId: string | null;
  proxyId: string;
  scope: 'instance' | 'org';
  uri: string;
  hostnames: string[];
  sshAddress: string;
  tlsAddress: string;
  enrolledAt: number;
  /** Read from the table; writes take it from enrolledAt of a renewal (upsertProxy). */
  renewedAt?: number | null;
  revokedAt: number | null;
}
export interface CertificateRow {
  serial: string;
  kind: string;
  authorityId: string;
  orgId: string | null;
  subjectUri: string;
  fingerprint: string;
  notAfter: number;
  requestedBy: string;
  grantId: string | null;
  createdAt: number;
}
export interface GrantRow {
  grantId: string;
  orgId: string;
  gatewayId: string;
  identityId: string;
  targetJson: string;
  mode: GrantMode;
  ruleId: string;
  createdAt: number;
  expiresAt: number;
}
export interface RevocationRow {
  seq: number;
  kind: 'gateway' | 'proxy' | 'identity' | 'grant' | 'certificate';
  orgId: string | null;
  subject: string;
  reason: string | null;
  revokedBy: string;
  at: number;
}
export interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  subject: string;
  action: string;
  outcome: 'ok' | 'refused';
  code: string | null;
  reason: string | null;
  orgId: string | null;
  source: string | null;
}

export function nul<T>(v: unknown): T | null {
  return v === null || v === undefined ? null : (v as T);
}

export function toAuthority(r: Raw): AuthorityRow {
  return {
    id: r['id'] as string,
    orgId: orgOf(r['org_id'] as string),
    purpose: r['purpose'] as string,
    kind: r['kind'] as AuthorityRow['kind'],
    public: r['public'] as string,
    sealedKey: nul(r['sealed_key']),
    createdAt: r['created_at'] as number,
    notAfter: nul(r['not_after']),
  };
}
export function toIdentity(r: Raw): IdentityRow {
  return {
    rowId: r['row_id'] as number,
    orgId: orgOf(r['org_id'] as string),
    identityId: r['identity_id'] as string,
    role: r['role'] as IdentityRow['role'],
    groups: JSON.parse(r['groups_json'] as string) as string[],
    clientId: r['client_id'] as string,
    secretHash: r['secret_hash'] as string,
    createdAt: r['created_at'] as number,
    revokedAt: nul(r['revoked_at']),
  };
}
export function toGateway(r: Raw): GatewayRow {
  return {
    orgId: r['org_id'] as string,
    gatewayId: r['gateway_id'] as string,
    uri: r['uri'] as string,
    enrolledAt: r['enrolled_at'] as number,
    renewedAt: nul(r['renewed_at']),
    revokedAt: nul(r['revoked_at']),
  };
}
export function toProxy(r: Raw): ProxyRow {
  return {
    orgId: orgOf(r['org_id'] as string),
    proxyId: r['proxy_id'] as string,
    scope: r['scope'] as 'instance' | 'org',
    uri: r['uri'] as string,
    hostnames: JSON.parse(r['hostnames_json'] as string) as string[],
    sshAddress: r['ssh_address'] as string,
    tlsAddress: r['tls_address'] as string,
    enrolledAt: r['enrolled_at'] as number,
    renewedAt: nul(r['renewed_at']),
    revokedAt: nul(r['revoked_at']),
  };
}
export function toCertificate(r: Raw): CertificateRow {
  return {
    serial: r['serial'] as string,
    kind: r['kind'] as string,
    authorityId: r['authority_id'] as string,
    orgId: orgOf(r['org_id'] as string),
    subjectUri: r['subject_uri'] as string,
    fingerprint: r['fingerprint'] as string,
    notAfter: r['not_after'] as number,
    requestedBy: r['requested_by'] as string,
    grantId: nul(r['grant_id']),
    createdAt: r['created_at'] as number,
  };
}

export function toGrant(r: Raw): GrantRow {
  return {
    grantId: r['grant_id'] as string,
    orgId: r['org_id'] as string,
    gatewayId: r['gateway_id'] as string,
    identityId: r['identity_id'] as string,
    targetJson: r['target_json'] as string,
    mode: r['mode'] as GrantMode,
    ruleId: r['rule_id'] as string,
    createdAt: r['created_at'] as number,
    expiresAt: r['expires_at'] as number,
  };
}

export function toEnrollmentToken(r: Raw): EnrollmentTokenRow {
  return {
    tokenHash: r['token_hash'] as string,
    orgId: orgOf(r['org_id'] as string),
    kind: r['kind'] as 'gateway' | 'proxy',
    subjectId: r['subject_id'] as string,
    createdBy: r['created_by'] as string,
    createdAt: r['created_at'] as number,
    expiresAt: r['expires_at'] as number,
    usedAt: nul(r['used_at']),
  };
}

export function toRevocation(r: Raw): RevocationRow {
  return {
    seq: r['seq'] as number,
    kind: r['kind'] as RevocationRow['kind'],
    orgId: orgOf(r['org_id'] as string),
    subject: r['subject'] as string,
    reason: nul(r['reason']),
    revokedBy: r['revoked_by'] as string,
    at: r['at'] as number,
  };
}

export function toAudit(r: Raw): AuditRow {
  return {
    seq: r['seq'] as number,
    at: r['at'] as number,
    actor: r['actor'] as string,
    subject: r['subject'] as string,
    action: r['action'] as string,
    outcome: r['outcome'] as 'ok' | 'refused',
    code: nul(r['code']),
    reason: nul(r['reason']),
    orgId: orgOf(r['org_id'] as string),
    source: nul(r['source']),
  };
}
