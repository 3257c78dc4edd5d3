/**
 * The access grant (SPEC §3, §4.4): who (actor) may reach what (target, modes) through which gateway of which
 * org, until when. The CA puts it in the platform's inner client cert as a NON-critical X.509 extension; the
 * gateway reads it back through the one verifier (lib/pki/verify) and decides with `checkGrant`.
 *
 * OID arc: 2.25.<uuid 7bd62539-55fb-4a15-aec6-53a1fb336e32 as a decimal>, generated once for this project.
 *   ARC.1  AccessGrant  (inner client cert)
 *   ARC.2  GatewayRoute (outer client cert: tells the proxy which org's gateway to route to)
 *   ARC.3  GatewayReplica (a gateway replica's inner server cert: which replica of the gateway holds it)
 *
 * AccessGrant ::= SEQUENCE {
 *   version    INTEGER (1),
 *   grantId    UTF8String,               -- id charset, 1..128
 *   orgId      UTF8String,
 *   gatewayId  UTF8String,
 *   actor      UTF8String,               -- identity URI of kind "identity" in orgId
 *   target     CHOICE { hostPort [0] IMPLICIT SEQUENCE { host UTF8String, port INTEGER (1..65535) },
 *                       name     [1] IMPLICIT UTF8String },
 *   notAfter   INTEGER,                  -- seconds since the epoch
 *   modes      [2] IMPLICIT SEQUENCE SIZE (1..4) OF ENUMERATED { tcp(0), http(1), ping(2), health(3) } OPTIONAL
 * }                                      -- modes absent: every mode
 * GatewayRoute ::= SEQUENCE { version INTEGER (1), orgId UTF8String, gatewayId UTF8String }
 * GatewayReplica ::= UTF8String          -- id charset, 1..128
 */
import { isIP } from 'node:net';
import forge from 'node-forge';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import * as der from './der.js';
import { isValidId, parseIdentity } from './identity.js';

export const GRANT_OID_ARC = '2.25.164606950001041719975179529538499735090';
export const GRANT_EXTENSION_OID = `${GRANT_OID_ARC}.1`;
export const ROUTE_EXTENSION_OID = `${GRANT_OID_ARC}.2`;
export const REPLICA_EXTENSION_OID = `${GRANT_OID_ARC}.3`;
/**
 * The replica name in a gateway replica's SSH user certificate: an informational extension (OpenSSH ignores
 * extensions it does not know; it grants nothing), beside permit-port-forwarding.
 */
export const REPLICA_SSH_EXTENSION = 'replica@infisical';
export const GRANT_VERSION = 1;
/** Upper bound of an encoded grant; a real one is ~200 bytes. */
export const MAX_GRANT_DER = 2048;
const MAX_HOST_LENGTH = 253;

export const GRANT_MODES = ['tcp', 'http', 'ping', 'health'] as const;
export type GrantMode = (typeof GRANT_MODES)[number];
export type GrantTarget = { host: string; port: number } | { name: string };

export interface AccessGrant {
  version: 1;
  grantId: string;
  orgId: string;
  gatewayId: string;
  /** Identity URI of the platform actor (kind "identity", same org). */
  actor: string;
  target: GrantTarget;
  /** Allowed ALPN modes; absent = every mode. */
  modes?: GrantMode[];
  /** Seconds since the epoch; the grant is usable while now <= notAfter. */
  notAfter: number;
}

/** What the outer client cert tells a proxy: which org's gateway this connection is for. */
export interface GatewayRoute {
  version: 1;
  orgId: string;
  gatewayId: string;
}

/** The situation a gateway is in when it checks a grant. */
export interface GrantContext {
  orgId: string;
  gatewayId: string;
  target: GrantTarget;
  mode: GrantMode;
  now: Date;
}

/** Checks every field of a grant; used before encoding and after decoding. */
export function validateGrant(g: AccessGrant): Verdict<AccessGrant> {
  const bad = (why: string) => refuse<AccessGrant>('E_GRANT_MALFORMED', why);
  if (g.version !== GRANT_VERSION) return bad(`unsupported grant version ${String(g.version)}`);
  for (const [field, value] of [
    ['grantId', g.grantId],
    ['orgId', g.orgId],
    ['gatewayId', g.gatewayId],
  ] as const) {
    if (!isValidId(value)) return bad(`bad ${field}`);
  }
  const actor = parseIdentity(g.actor);
  if (!actor.ok) return bad(`bad actor: ${actor.reason}`);
  if (actor.value.kind !== 'identity') return bad(`actor is a ${actor.value.kind}, not an identity`);
  if (actor.value.orgId !== g.orgId) return bad('actor belongs to another org');
  const target = validateTarget(g.target);
  if (!target.ok) return bad(target.reason);
  if (!Number.isSafeInteger(g.notAfter) || g.notAfter <= 0) return bad('bad notAfter');
  if (g.modes !== undefined) {
    if (!Array.isArray(g.modes) || g.modes.length === 0 || g.modes.length > GRANT_MODES.length) return bad('bad modes');
    if (new Set(g.modes).size !== g.modes.length) return bad('duplicate mode');
    if (!g.modes.every((m) => GRANT_MODES.includes(m))) return bad('unknown mode');
  }
  return accept(g);
}

function validateTarget(t: GrantTarget): Verdict<GrantTarget> {
  if (t && typeof t === 'object' && 'name' in t) {
    return isValidId(t.name) ? accept(t) : refuse('E_GRANT_MALFORMED', 'bad target name');
  }
  if (t && typeof t === 'object' && 'host' in t) {
    if (!isValidHost(t.host)) return refuse('E_GRANT_MALFORMED', 'bad target host');
    if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) return refuse('E_GRANT_MALFORMED', 'bad port');
    return accept(t);
  }
  return refuse('E_GRANT_MALFORMED', 'target is neither {host, port} nor {name}');
}

/** A DNS name (letters, digits, dashes, dots; no empty labels) or an IPv4/IPv6 literal. */
export function isValidHost(host: unknown): host is string {
  if (typeof host !== 'string' || host.length === 0 || host.length > MAX_HOST_LENGTH) return false;
  if (isIP(host) !== 0) return true;
  return host
    .split('.')
    .every((l) => l.length > 0 && l.length <= 63 && /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$/.test(l));
}

/** DER of the grant (the extension's extnValue content). Refuses an invalid grant. */
export function encodeGrant(g: AccessGrant): Verdict<Buffer> {
  const v = validateGrant(g);
  if (!v.ok) return v;
  const target =
    'name' in g.target
      ? der.ctx(1, Buffer.from(g.target.name, 'utf8'))
      : der.ctx(0, [der.utf8(g.target.host), der.uint(g.target.port)]);
  const fields = [
    der.uint(g.version),
    der.utf8(g.grantId),
    der.utf8(g.orgId),
    der.utf8(g.gatewayId),
    der.utf8(g.actor),
    target,
    der.uint(g.notAfter),
  ];
  if (g.modes) {
    const enums = g.modes.map((m) => enumerated(GRANT_MODES.indexOf(m)));
    fields.push(der.ctx(2, enums));
  }
  const out = der.encode(der.seq(...fields));
  if (out.length > MAX_GRANT_DER) return refuse('E_GRANT_MALFORMED', 'encoded grant too large');
  return accept(out);
}

/** Strictly decodes and validates a grant. */
export function decodeGrant(bytes: Buffer): Verdict<AccessGrant> {
  try {
    const f = der.readSeq(der.decode(bytes, MAX_GRANT_DER), 'grant', 7, 8);
    const version = der.readUint(f[0], 'version');
    if (version !== GRANT_VERSION) return refuse('E_GRANT_MALFORMED', `unsupported grant version ${version}`);
    const t = f[5];
    let target: GrantTarget;
    if (der.isCtx(t, 1)) {
      target = { name: der.utf8Content(der.content(der.readCtx(t, 1, false, 'target')), 'target name', 128) };
    } else {
      const hp = der.readCtx(t, 0, true, 'target').value as der.Node[];
      if (hp.length !== 2) return refuse('E_GRANT_MALFORMED', 'target: expected host and port');
      target = { host: der.readUtf8(hp[0], 'host', MAX_HOST_LENGTH), port: der.readUint(hp[1], 'port') };
    }
    const grant: AccessGrant = {
      version: GRANT_VERSION,
      grantId: der.readUtf8(f[1], 'grantId', 128),
      orgId: der.readUtf8(f[2], 'orgId', 128),
      gatewayId: der.readUtf8(f[3], 'gatewayId', 128),
      actor: der.readUtf8(f[4], 'actor', 600),
      target,
      notAfter: der.readUint(f[6], 'notAfter'),
    };
    if (f.length === 8) {
      const list = der.readCtx(f[7], 2, true, 'modes').value as der.Node[];
      grant.modes = list.map((n) => {
        const i = readEnumerated(n);
        const mode = GRANT_MODES[i];
        if (mode === undefined) throw new der.DerError(`unknown mode ${i}`);
        return mode;
      });
    }
    return validateGrant(grant);
  } catch (err) {
    if (err instanceof der.DerError) return refuse('E_GRANT_MALFORMED', err.message);
    throw err;
  }
}

export function encodeRoute(r: GatewayRoute): Verdict<Buffer> {
  if (r.version !== GRANT_VERSION || !isValidId(r.orgId) || !isValidId(r.gatewayId)) {
    return refuse('E_GRANT_MALFORMED', 'bad gateway route');
  }
  return accept(der.encode(der.seq(der.uint(r.version), der.utf8(r.orgId), der.utf8(r.gatewayId))));
}

/**
 * A gateway replica's name (enrolled with --replica): an attribute of the certificate, not an identity. The URI
 * SAN stays the gateway's, so the platform's exact URI check and every proxy see one gateway.
 */
export function encodeReplica(replica: string): Verdict<Buffer> {
  if (!isValidId(replica)) return refuse('E_IDENTITY_MALFORMED', 'bad replica name');
  return accept(der.encode(der.utf8(replica)));
}

export function decodeReplica(bytes: Buffer): Verdict<string> {
  try {
    const replica = der.readUtf8(der.decode(bytes, 256), 'replica', 128);
    return isValidId(replica) ? accept(replica) : refuse('E_CERT_MALFORMED', 'bad replica name');
  } catch (err) {
    if (err instanceof der.DerError) return refuse('E_CERT_MALFORMED', err.message);
    throw err;
  }
}

export function decodeRoute(bytes: Buffer): Verdict<GatewayRoute> {
  try {
    const f = der.readSeq(der.decode(bytes, 512), 'route', 3, 3);
    const route: GatewayRoute = {
      version: der.readUint(f[0], 'version') as 1,
      orgId: der.readUtf8(f[1], 'orgId', 128),
      gatewayId: der.readUtf8(f[2], 'gatewayId', 128),
    };
    if (route.version !== GRANT_VERSION || !isValidId(route.orgId) || !isValidId(route.gatewayId)) {
      return refuse('E_GRANT_MALFORMED', 'bad gateway route');
    }
    return accept(route);
  } catch (err) {
    if (err instanceof der.DerError) return refuse('E_GRANT_MALFORMED', err.message);
    throw err;
  }
}

/**
 * The gateway's decision: does this grant allow this connection now? Order matters only for the reason
 * given: org, then gateway, then expiry, then target and mode.
 */
export function checkGrant(grant: AccessGrant, ctx: GrantContext): Verdict<AccessGrant> {
  const valid = validateGrant(grant);
  if (!valid.ok) return valid;
  if (grant.orgId !== ctx.orgId) return refuse('E_GRANT_ORG', `grant is for org ${grant.orgId}`);
  if (grant.gatewayId !== ctx.gatewayId) return refuse('E_GRANT_GATEWAY', `grant is for gateway ${grant.gatewayId}`);
  const nowSec = Math.floor(ctx.now.getTime() / 1000);
  if (nowSec > grant.notAfter) {
    return refuse('E_GRANT_EXPIRED', `grant expired at ${new Date(grant.notAfter * 1000).toISOString()}`);
  }
  if (!sameTarget(grant.target, ctx.target))
    return refuse('E_GRANT_TARGET', `grant does not cover ${showTarget(ctx.target)}`);
  if (grant.modes && !grant.modes.includes(ctx.mode))
    return refuse('E_GRANT_TARGET', `grant does not allow mode ${ctx.mode}`);
  return accept(grant);
}

function sameTarget(a: GrantTarget, b: GrantTarget): boolean {
  if ('name' in a) return 'name' in b && a.name === b.name;
  // Host names compare case-insensitively (DNS); IP literals compare as written.
  return 'host' in b && a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port;
}

function showTarget(t: GrantTarget): string {
  return 'name' in t ? `target ${JSON.stringify(t.name)}` : `${JSON.stringify(t.host)}:${t.port}`;
}

function enumerated(i: number): der.Node {
  return forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.ENUMERATED, false, String.fromCharCode(i));
}

function readEnumerated(n: der.Node): number {
  if (n.tagClass !== forge.asn1.Class.UNIVERSAL || n.type !== forge.asn1.Type.ENUMERATED || n.constructed) {
    throw new der.DerError('mode: not ENUMERATED');
  }
  const v = n.value as string;
  if (v.length !== 1 || v.charCodeAt(0) > 0x7f) throw new der.DerError('mode: bad ENUMERATED');
  return v.charCodeAt(0);
}
