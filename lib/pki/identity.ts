/**
 * SPIFFE-style identity URIs (SPEC §3). Every actor's URI goes into the URI SAN of its X.509 certs and the key
 * id of its SSH certs, so building and parsing live in one place and are strict: one canonical spelling per
 * identity, nothing else accepted (no query, fragment, port, userinfo, percent-encoding, or extra segments).
 *
 *   spiffe://<td>/org/<orgId>/gateway/<gatewayId>
 *   spiffe://<td>/org/<orgId>/proxy/<proxyId>
 *   spiffe://<td>/instance/proxy/<proxyId>
 *   spiffe://<td>/org/<orgId>/identity/<identityId>
 */
import { accept, refuse, unwrap, type Verdict } from '../errors/codes.js';

export type IdentityKind = 'gateway' | 'org-proxy' | 'instance-proxy' | 'identity';

export type Identity =
  | { kind: 'gateway'; trustDomain: string; orgId: string; id: string }
  | { kind: 'org-proxy'; trustDomain: string; orgId: string; id: string }
  | { kind: 'instance-proxy'; trustDomain: string; id: string }
  | { kind: 'identity'; trustDomain: string; orgId: string; id: string };

/** Longest id (orgId, gatewayId, proxyId, identityId) accepted. */
export const MAX_ID_LENGTH = 128;
/** Longest trust domain accepted (a DNS name). */
export const MAX_TRUST_DOMAIN_LENGTH = 253;
/** Longest whole URI accepted; bounded so a hostile SAN cannot make us allocate much. */
export const MAX_URI_LENGTH = 600;

/**
 * THE id rule (orgId, gatewayId, proxyId, identityId, group and target names), written once: 1 to 128 of
 * A-Z a-z 0-9 . _ -, but not "." or ".." (an id is a URI path segment). Schemas that take a pattern use it;
 * code uses isValidId.
 */
export const ID_PATTERN = new RegExp(`^(?!\\.{1,2}$)[A-Za-z0-9._-]{1,${MAX_ID_LENGTH}}$`);
/** The id rule in words, for messages that refuse an id (ID_PATTERN is the rule itself). */
export const ID_RULE = `1 to ${MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ -, not "." or ".."`;
// SPIFFE trust domains are lowercase: letters, digits, dots, dashes, underscores.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SCHEME = 'spiffe://';

/** True when `id` is a valid id segment: [A-Za-z0-9._-], 1..128 chars, not "." or "..". */
export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

/** True when `td` is a valid trust domain: lowercase [a-z0-9._-], 1..253 chars, no empty labels. */
export function isValidTrustDomain(td: unknown): td is string {
  return (
    typeof td === 'string' &&
    td.length > 0 &&
    td.length <= MAX_TRUST_DOMAIN_LENGTH &&
    TRUST_DOMAIN_RE.test(td) &&
    !td.split('.').includes('')
  );
}

function checkParts(trustDomain: string, ids: Record<string, string>): Verdict<true> {
  if (!isValidTrustDomain(trustDomain)) return refuse('E_IDENTITY_MALFORMED', `bad trust domain ${show(trustDomain)}`);
  for (const [name, value] of Object.entries(ids)) {
    if (!isValidId(value)) return refuse('E_IDENTITY_MALFORMED', `bad ${name} ${show(value)}`);
  }
  return accept(true);
}

/** Formats an identity as its canonical URI; refuses invalid parts. */
export function formatIdentity(identity: Identity): Verdict<string> {
  const td = identity.trustDomain;
  switch (identity.kind) {
    case 'gateway':
    case 'org-proxy':
    case 'identity': {
      const ok = checkParts(td, { orgId: identity.orgId, id: identity.id });
      if (!ok.ok) return ok;
      const segment = identity.kind === 'org-proxy' ? 'proxy' : identity.kind;
      return accept(`${SCHEME}${td}/org/${identity.orgId}/${segment}/${identity.id}`);
    }
    case 'instance-proxy': {
      const ok = checkParts(td, { id: identity.id });
      if (!ok.ok) return ok;
      return accept(`${SCHEME}${td}/instance/proxy/${identity.id}`);
    }
    default:
      return refuse('E_IDENTITY_MALFORMED', 'unknown identity kind');
  }
}

/** `spiffe://<td>/org/<orgId>/gateway/<gatewayId>`; throws a GatewayError on invalid parts (formatIdentity gives a Verdict). */
export function gatewayUri(trustDomain: string, orgId: string, gatewayId: string): string {
  return mustFormat({ kind: 'gateway', trustDomain, orgId, id: gatewayId });
}

/** `spiffe://<td>/org/<orgId>/proxy/<proxyId>`; throws on invalid parts. */
export function orgProxyUri(trustDomain: string, orgId: string, proxyId: string): string {
  return mustFormat({ kind: 'org-proxy', trustDomain, orgId, id: proxyId });
}

/** `spiffe://<td>/instance/proxy/<proxyId>`; throws on invalid parts. */
export function instanceProxyUri(trustDomain: string, proxyId: string): string {
  return mustFormat({ kind: 'instance-proxy', trustDomain, id: proxyId });
}

/** `spiffe://<td>/org/<orgId>/identity/<identityId>`; throws on invalid parts. */
export function identityUri(trustDomain: string, orgId: string, identityId: string): string {
  return mustFormat({ kind: 'identity', trustDomain, orgId, id: identityId });
}

/** Parses a URI into an identity. Only the canonical spelling produced by formatIdentity is accepted. */
export function parseIdentity(uri: unknown): Verdict<Identity> {
  if (typeof uri !== 'string') return refuse('E_IDENTITY_MALFORMED', 'identity URI is not a string');
  if (uri.length > MAX_URI_LENGTH) return refuse('E_IDENTITY_MALFORMED', `identity URI longer than ${MAX_URI_LENGTH}`);
  if (!uri.startsWith(SCHEME)) return refuse('E_IDENTITY_MALFORMED', `not a spiffe:// URI: ${show(uri)}`);
  const parts = uri.slice(SCHEME.length).split('/');
  const td = parts[0] ?? '';
  let identity: Identity | undefined;
  if (parts.length === 5 && parts[1] === 'org') {
    const orgId = parts[2]!;
    const id = parts[4]!;
    if (parts[3] === 'gateway') identity = { kind: 'gateway', trustDomain: td, orgId, id };
    else if (parts[3] === 'proxy') identity = { kind: 'org-proxy', trustDomain: td, orgId, id };
    else if (parts[3] === 'identity') identity = { kind: 'identity', trustDomain: td, orgId, id };
  } else if (parts.length === 4 && parts[1] === 'instance' && parts[2] === 'proxy') {
    identity = { kind: 'instance-proxy', trustDomain: td, id: parts[3]! };
  }
  if (!identity) return refuse('E_IDENTITY_MALFORMED', `unknown identity path: ${show(uri)}`);
  const formatted = formatIdentity(identity);
  if (!formatted.ok) return formatted;
  // Round trip guards against anything the split tolerated.
  if (formatted.value !== uri) return refuse('E_IDENTITY_MALFORMED', `non-canonical identity URI: ${show(uri)}`);
  return accept(identity);
}

/** Parses and requires one kind; a URI of another kind is refused with E_CERT_IDENTITY. */
export function parseIdentityOfKind<K extends IdentityKind>(
  uri: unknown,
  kind: K,
): Verdict<Extract<Identity, { kind: K }>> {
  const parsed = parseIdentity(uri);
  if (!parsed.ok) return parsed;
  if (parsed.value.kind !== kind) {
    return refuse('E_CERT_IDENTITY', `expected a ${kind} identity, got ${parsed.value.kind}`);
  }
  return accept(parsed.value as Extract<Identity, { kind: K }>);
}

function mustFormat(identity: Identity): string {
  return unwrap(formatIdentity(identity));
}

/** Quotes untrusted text for error messages, bounded so a hostile value cannot flood logs. */
function show(value: unknown): string {
  const s = typeof value === 'string' ? value : String(value);
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}
