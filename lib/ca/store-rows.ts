/** Row shapes of the CA database (store-schema.ts) and their mapping from SQLite rows. */
import type { GrantMode } from '../pki/grant.js';
import type { AuditEntry } from '../protocol/api.js';

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
/** An audit entry as the API shows it (audit.ts), with its time in ms and the request's source address. */
export type AuditRow = Omit<AuditEntry, 'at'> & { at: number; source: string | null };

export function nul<T>(v: unknown): T | null {
  return v === null || v === undefined ? null : (v as T);
}

/**
 * How a row field is read from its column (`fooBar` from `foo_bar`): `value` as SQLite gives it (NULL: null),
 * `org` as an org id ('' is the instance: null), `json` parsed from the column `foo_bar_json`.
 */
type ColumnKind = 'value' | 'org' | 'json';

/** A mapper from SQLite rows to T, one column kind per field of T (the compiler checks that none is missing). */
function rowOf<T extends object>(fields: { [K in keyof T]-?: ColumnKind }): (r: Raw) => T {
  const columns = Object.entries<ColumnKind>(fields).map(([field, kind]) => {
    const column = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    return { field, kind, column: kind === 'json' ? `${column}_json` : column };
  });
  return (r) => {
    const row: Raw = {};
    for (const { field, kind, column } of columns) {
      const v = r[column];
      row[field] = kind === 'org' ? orgOf(v as string) : kind === 'json' ? JSON.parse(v as string) : (v ?? null);
    }
    // Each field was read from its own column above, by the kind its type declares.
    return row as T;
  };
}

const v = 'value';
export const toAuthority = rowOf<AuthorityRow>({
  id: v,
  orgId: 'org',
  purpose: v,
  kind: v,
  public: v,
  sealedKey: v,
  createdAt: v,
  notAfter: v,
});
export const toIdentity = rowOf<IdentityRow>({
  rowId: v,
  orgId: 'org',
  identityId: v,
  role: v,
  groups: 'json',
  clientId: v,
  secretHash: v,
  createdAt: v,
  revokedAt: v,
});
export const toGateway = rowOf<GatewayRow>({
  orgId: v,
  gatewayId: v,
  uri: v,
  enrolledAt: v,
  renewedAt: v,
  revokedAt: v,
});
export const toProxy = rowOf<ProxyRow>({
  orgId: 'org',
  proxyId: v,
  scope: v,
  uri: v,
  hostnames: 'json',
  sshAddress: v,
  tlsAddress: v,
  enrolledAt: v,
  renewedAt: v,
  revokedAt: v,
});
export const toCertificate = rowOf<CertificateRow>({
  serial: v,
  kind: v,
  authorityId: v,
  orgId: 'org',
  subjectUri: v,
  fingerprint: v,
  notAfter: v,
  requestedBy: v,
  grantId: v,
  createdAt: v,
});
export const toGrant = rowOf<GrantRow>({
  grantId: v,
  orgId: v,
  gatewayId: v,
  identityId: v,
  targetJson: v,
  mode: v,
  ruleId: v,
  createdAt: v,
  expiresAt: v,
});
export const toEnrollmentToken = rowOf<EnrollmentTokenRow>({
  tokenHash: v,
  orgId: 'org',
  kind: v,
  subjectId: v,
  createdBy: v,
  createdAt: v,
  expiresAt: v,
  usedAt: v,
});
export const toRevocation = rowOf<RevocationRow>({
  seq: v,
  kind: v,
  orgId: 'org',
  subject: v,
  reason: v,
  revokedBy: v,
  at: v,
});
export const toAudit = rowOf<AuditRow>({
  seq: v,
  at: v,
  actor: v,
  subject: v,
  action: v,
  outcome: v,
  code: v,
  reason: v,
  orgId: 'org',
  source: v,
});
