/**
 * THE X.509 verifier: every certificate decision of the suite is made here, and every TLS listener and dialer
 * reaches it through lib/pki/tls `checkPeer` (the shape of OpenSSH's sshkey_cert_check_authority).
 *
 * Pure: data and a clock in, a Verdict out. It builds the path from the leaf to a trust anchor through the
 * certificates the peer sent, checks every signature natively, then every certificate's validity (with skew),
 * algorithms, critical extensions and CA constraints, then the leaf's usage, identity, revocation and grant.
 * A path already built for the same certificate bytes under the same anchors comes from path-cache.ts (its
 * parse and signatures only: every other check runs on every call).
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { accept, type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import { ipBytes } from './build.js';
import { DerError } from './der.js';
import {
  type AccessGrant,
  decodeGrant,
  decodeRoute,
  type GatewayRoute,
  GRANT_EXTENSION_OID,
  ROUTE_EXTENSION_OID,
} from './grant.js';
import {
  algorithmFitsKey,
  describeKey,
  describeSpki,
  type KeyInfo,
  publicKeyFromSpki,
  SIG_ALGS,
  WEAK_SIG_ALGS,
} from './keys.js';
import { cachedPath, pathKey, rememberPath, rememberVerdictPath, verdictPath } from './path-cache.js';
import { certificateInputs, OID, type ParsedCert, parseCertificate } from './x509.js';

export type Purpose = 'serverAuth' | 'clientAuth';

/** The certificate that issued a revocation candidate, for `isRevoked`. */
export interface IssuerRef {
  /** SHA-256 of the issuer certificate's DER, lowercase hex. */
  fingerprint256: string;
  /** The issuer's subjectKeyIdentifier, lowercase hex, when it has one. */
  subjectKeyId?: string;
}

/** Trust anchors, parsed once (use loadTrustAnchors) so each verification only parses the peer's chain. */
export interface TrustAnchors {
  /** SHA-256 over the anchors' fingerprints, in order: the anchor set's identity in the path cache (path-cache.ts). */
  readonly id: string;
  readonly anchors: readonly { cert: ParsedCert; key: KeyObject; info: Verdict<KeyInfo> }[];
}

export interface VerifyOptions {
  /** The peer's chain, leaf first: a PEM bundle, one DER buffer, or a list of PEM/DER certificates. */
  chain: string | Buffer | readonly (string | Buffer)[];
  anchors: TrustAnchors | string | Buffer | readonly (string | Buffer)[];
  now: Date;
  /** Clock skew tolerated on every notBefore/notAfter, default 60 s. */
  skewSec?: number;
  purpose: Purpose;
  /** When set, the leaf must carry exactly one URI SAN, equal to this. */
  expectedUri?: string;
  /** When set, a DNS or IP SAN of the leaf must equal this (case-insensitive for DNS, no wildcards). */
  expectedHost?: string;
  /** Asked for the leaf and every intermediate; true = revoked. */
  isRevoked?: (serialHex: string, issuer: IssuerRef) => boolean;
  /** Refuse a leaf without an access grant (E_GRANT_MISSING). */
  requireGrant?: boolean;
  /** Refuse a leaf without a gateway route (outer client certs at a proxy). */
  requireRoute?: boolean;
}

export interface VerifiedPeer {
  serialHex: string;
  subjectCn?: string;
  uris: string[];
  dns: string[];
  ips: string[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the certificate that signed the leaf. */
  issuerFingerprint: string;
  /** SHA-256 of the trust anchor the path ends at. */
  anchorFingerprint: string;
  /** SHA-256 of the leaf. */
  fingerprint256: string;
  /** Path length in certificates, leaf and anchor included. */
  pathLength: number;
  grant?: AccessGrant;
  route?: GatewayRoute;
}

export const DEFAULT_SKEW_SEC = 60;
const MAX_CHAIN_CERTS = 8;
const MAX_PATH = 6;
/** Extensions this verifier processes: only these may be critical. */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyId,
  OID.authorityKeyId,
  GRANT_EXTENSION_OID,
  ROUTE_EXTENSION_OID,
]);

export function loadTrustAnchors(input: string | Buffer | readonly (string | Buffer)[]): Verdict<TrustAnchors> {
  try {
    const ders = certificateInputs(input, 64);
    const anchors = ders.map((d) => {
      const cert = parseCertificate(d);
      const key = createPublicKey({ key: cert.spki, format: 'der', type: 'spki' });
      return { cert, key, info: describeKey(key) };
    });
    if (anchors.length === 0) return refuse('E_CERT_MALFORMED', 'no trust anchor certificate');
    const id = createHash('sha256');
    for (const a of anchors) id.update(a.cert.fingerprint256);
    return { ok: true, value: { id: id.digest('hex'), anchors } };
  } catch (err) {
    return refuse('E_CERT_MALFORMED', `trust anchor: ${(err as Error).message}`);
  }
}

export function verifyCertificateChain(opts: VerifyOptions): Verdict<VerifiedPeer> {
  let anchors: TrustAnchors;
  if (isTrustAnchors(opts.anchors)) {
    anchors = opts.anchors;
  } else {
    const loaded = loadTrustAnchors(opts.anchors);
    if (!loaded.ok) return loaded;
    anchors = loaded.value;
  }
  let ders: Buffer[];
  try {
    ders = certificateInputs(opts.chain, MAX_CHAIN_CERTS);
  } catch (err) {
    if (err instanceof DerError) return refuse('E_CERT_MALFORMED', err.message);
    throw err;
  }
  if (ders.length === 0) return refuse('E_CERT_MALFORMED', 'no peer certificate');
  // The parse and the signatures depend on the bytes and the anchors alone: a path built before for exactly
  // these is taken from the cache (path-cache.ts); every other check below runs on every call.
  const key = pathKey(anchors.id, ders);
  const cached = cachedPath<Anchor>(key);
  let built = cached;
  if (!built) {
    const fresh = parseAndBuild(ders, anchors);
    if (!fresh.ok) return fresh;
    built = fresh.value;
  }
  const { path, anchor } = built;
  const full = [...path, anchor.cert];
  const checked =
    checkKeys(path, anchor.info) ??
    checkValidity(full, opts.now, opts.skewSec ?? DEFAULT_SKEW_SEC) ??
    checkCritical(full) ??
    checkAuthorities(full, opts.purpose) ??
    checkLeaf(path[0]!, opts) ??
    checkRevocation(full, opts.isRevoked);
  if (checked) return checked;
  const verdict = finish(path[0]!, full, opts);
  // Kept only once the whole verdict was ok: an expired, revoked or misused chain never takes a place.
  if (!cached && verdict.ok) rememberPath(key, built);
  if (verdict.ok) {
    const judged: Judged = { full, anchors, expectations: expectationsOf(opts) };
    rememberVerdictPath(frozen(verdict.value), judged);
  }
  return verdict;
}

/** What a verdict depends on besides the bytes and the anchors: a later judgement must ask the same. */
interface Expectations {
  purpose: Purpose;
  expectedUri: string | undefined;
  expectedHost: string | undefined;
  requireGrant: boolean;
  requireRoute: boolean;
}

function expectationsOf(o: Omit<VerifyOptions, 'chain'>): Expectations {
  return {
    purpose: o.purpose,
    expectedUri: o.expectedUri,
    expectedHost: o.expectedHost,
    requireGrant: o.requireGrant === true,
    requireRoute: o.requireRoute === true,
  };
}

/** What verifyAgain needs of a verdict given here (path-cache.ts keeps it with the verdict object). */
interface Judged {
  full: ParsedCert[];
  anchors: TrustAnchors;
  expectations: Expectations;
}

/** A verdict is read, never changed: frozen, so what is judged again later is what was judged first. */
function frozen(peer: VerifiedPeer): VerifiedPeer {
  for (const list of [peer.uris, peer.dns, peer.ips]) Object.freeze(list);
  if (peer.grant) Object.freeze(Object.freeze(peer.grant).target);
  if (peer.route) Object.freeze(peer.route);
  return Object.freeze(peer);
}

/**
 * A peer this verifier accepted, judged again at a later moment of the same TLS session (an inner session held
 * ahead of need and used later), asked with the same options as the first time but the clock and revocations of
 * now: what depends on those runs again on the path the first verdict was built on (every certificate's validity,
 * with this call's skew; every serial's revocation, with this call's `isRevoked`). The rest (parse, path,
 * signatures, key strength, critical extensions, CA constraints, the leaf's usage and identity, its grant or
 * route) depends only on the certificate bytes, the anchors and the expectations, and a session can change none:
 * TLS 1.3 has no renegotiation, the anchors must be the very same object, and the expectations (purpose, expected
 * URI and host, requireGrant, requireRoute) the same values. So the verdict is the one verifyCertificateChain would
 * give on the same chain with these options, for a fraction of the work (no certificate read from the socket, no
 * hashing, no grant decoding). The verdict objects are frozen: the one returned is the one judged.
 *
 * Undefined when `peer` is not a verdict of this verifier, was given under other anchors or other expectations,
 * or the path cache is off: the caller then verifies the chain in full.
 */
export function verifyAgain(peer: VerifiedPeer, opts: Omit<VerifyOptions, 'chain'>): Verdict<VerifiedPeer> | undefined {
  const j = verdictPath<Judged>(peer);
  if (!j || j.anchors !== opts.anchors || !sameExpectations(j.expectations, expectationsOf(opts))) return undefined;
  return (
    checkValidity(j.full, opts.now, opts.skewSec ?? DEFAULT_SKEW_SEC) ??
    checkRevocation(j.full, opts.isRevoked) ??
    accept(peer)
  );
}

function sameExpectations(a: Expectations, b: Expectations): boolean {
  return (
    a.purpose === b.purpose &&
    a.expectedUri === b.expectedUri &&
    a.expectedHost === b.expectedHost &&
    a.requireGrant === b.requireGrant &&
    a.requireRoute === b.requireRoute
  );
}

function isTrustAnchors(a: VerifyOptions['anchors']): a is TrustAnchors {
  return typeof a === 'object' && a !== null && !Buffer.isBuffer(a) && 'anchors' in a;
}

type Anchor = TrustAnchors['anchors'][number];

/** Parses every certificate the peer sent and builds the path: the work the path cache saves. */
function parseAndBuild(ders: Buffer[], anchors: TrustAnchors): Verdict<{ path: ParsedCert[]; anchor: Anchor }> {
  let certs: ParsedCert[];
  try {
    certs = ders.map((d, i) => {
      try {
        return parseCertificate(d);
      } catch (err) {
        throw new DerError(`certificate ${i}: ${(err as Error).message}`);
      }
    });
  } catch (err) {
    if (err instanceof DerError) return refuse('E_CERT_MALFORMED', err.message);
    throw err;
  }
  return buildPath(certs, anchors);
}

/** Walks issuer links from the leaf; the path ends at the first certificate an anchor signed. */
function buildPath(certs: ParsedCert[], trust: TrustAnchors): Verdict<{ path: ParsedCert[]; anchor: Anchor }> {
  const path = [certs[0]!];
  const pool = certs.slice(1);
  // The worst reason seen while trying candidates: a weak algorithm beats a bad signature beats "no issuer".
  let failure: { code: ErrorCode; reason: string } = { code: 'E_CERT_UNTRUSTED', reason: '' };
  const rank: Partial<Record<ErrorCode, number>> = {
    E_CERT_UNTRUSTED: 0,
    E_CERT_SIGNATURE: 1,
    E_CERT_WEAK_ALGORITHM: 2,
  };
  const note = (code: ErrorCode, reason: string) => {
    if ((rank[code] ?? 3) >= (rank[failure.code] ?? 3)) failure = { code, reason };
  };
  for (let depth = 0; depth < MAX_PATH; depth++) {
    const current = path[path.length - 1]!;
    for (const anchor of trust.anchors) {
      if (!issuedBy(current, anchor.cert)) continue;
      const sig = checkSignature(current, anchor.key, anchor.info);
      if (sig === true) return { ok: true, value: { path, anchor } };
      note(sig.code, sig.reason);
    }
    let next: ParsedCert | undefined;
    for (const candidate of pool) {
      if (path.includes(candidate) || !issuedBy(current, candidate)) continue;
      let key: KeyObject;
      try {
        key = publicKeyFromSpki(candidate.spki);
      } catch {
        note('E_CERT_MALFORMED', 'issuer public key cannot be loaded');
        continue;
      }
      const sig = checkSignature(current, key, describeKey(key));
      if (sig === true) {
        next = candidate;
        break;
      }
      note(sig.code, sig.reason);
    }
    if (!next) {
      const who = path.length === 1 ? 'leaf' : `certificate ${path.length - 1} of the path`;
      return refuse(failure.code, failure.reason || `no trusted issuer found for the ${who}`);
    }
    path.push(next);
  }
  return refuse('E_CERT_CHAIN_TOO_LONG', `no trust anchor within ${MAX_PATH} certificates`);
}

/** Name match, and key identifiers agree when both are present (a different CA with the same name is skipped). */
function issuedBy(child: ParsedCert, issuer: ParsedCert): boolean {
  if (!child.issuer.equals(issuer.subject)) return false;
  return !child.authorityKeyId || !issuer.subjectKeyId || child.authorityKeyId.equals(issuer.subjectKeyId);
}

function checkSignature(
  cert: ParsedCert,
  key: KeyObject,
  keyInfo: Verdict<KeyInfo>,
): true | { code: ErrorCode; reason: string } {
  const weak = WEAK_SIG_ALGS[cert.signatureAlgorithm];
  if (weak) return { code: 'E_CERT_WEAK_ALGORITHM', reason: `signed with ${weak}` };
  const alg = SIG_ALGS[cert.signatureAlgorithm];
  if (!alg)
    return { code: 'E_CERT_WEAK_ALGORITHM', reason: `signature algorithm ${cert.signatureAlgorithm} is not accepted` };
  if (!keyInfo.ok) return { code: keyInfo.code, reason: `issuer key: ${keyInfo.reason}` };
  const paramsOk = alg.nullParams ? cert.signatureParams !== 'other' : cert.signatureParams === 'absent';
  if (!algorithmFitsKey(alg, keyInfo.value) || !paramsOk) {
    return { code: 'E_CERT_SIGNATURE', reason: `signature algorithm ${alg.oid} does not fit the issuer key` };
  }
  let ok = false;
  try {
    ok = verify(alg.hash, cert.tbs, key, cert.signature);
  } catch {
    ok = false;
  }
  return ok
    ? true
    : { code: 'E_CERT_SIGNATURE', reason: `signature of ${cert.subjectCn ?? 'certificate'} does not verify` };
}

function checkKeys(path: ParsedCert[], anchorKey: Verdict<KeyInfo>): Verdict<never> | undefined {
  if (!anchorKey.ok) return refuse(anchorKey.code, `trust anchor key: ${anchorKey.reason}`);
  for (const cert of path) {
    const info = describeSpki(cert.spki);
    if (!info.ok) return refuse(info.code, `${cert.subjectCn ?? 'certificate'}: ${info.reason}`);
    if (cert.serialNegative) return refuse('E_CERT_MALFORMED', 'negative serial number');
  }
  return undefined;
}

function checkValidity(full: ParsedCert[], now: Date, skewSec: number): Verdict<never> | undefined {
  const t = now.getTime();
  const skew = skewSec * 1000;
  for (const c of full) {
    const who = c.subjectCn ?? c.fingerprint256.slice(0, 16);
    if (t + skew < c.notBefore.getTime()) {
      return refuse('E_CERT_NOT_YET_VALID', `${who} valid from ${c.notBefore.toISOString()}`);
    }
    if (t - skew > c.notAfter.getTime())
      return refuse('E_CERT_EXPIRED', `${who} expired at ${c.notAfter.toISOString()}`);
  }
  return undefined;
}

function checkCritical(full: ParsedCert[]): Verdict<never> | undefined {
  for (const c of full) {
    for (const [id, e] of c.extensions) {
      if (e.critical && !UNDERSTOOD.has(id))
        return refuse('E_CERT_CRITICAL_OPTION', `unknown critical extension ${id}`);
    }
  }
  return undefined;
}

/** Every certificate above the leaf must be a CA allowed to sign certs for this purpose at this depth. */
function checkAuthorities(full: ParsedCert[], purpose: Purpose): Verdict<never> | undefined {
  for (let k = 1; k < full.length; k++) {
    const ca = full[k]!;
    const who = ca.subjectCn ?? 'issuer';
    if (!ca.basicConstraints?.ca) return refuse('E_CERT_WRONG_TYPE', `${who} is not a CA (basicConstraints CA:false)`);
    if (ca.keyUsage && !ca.keyUsage.has('keyCertSign')) return refuse('E_CERT_USAGE', `${who} lacks keyCertSign`);
    if (ca.extKeyUsage && !allows(ca.extKeyUsage, purpose))
      return refuse('E_CERT_USAGE', `${who} is not allowed ${purpose}`);
    // Intermediates strictly between this CA and the leaf.
    const below = k - 1;
    const pathLen = ca.basicConstraints.pathLen;
    if (pathLen !== undefined && below > pathLen) {
      return refuse('E_CERT_CHAIN_TOO_LONG', `${who} allows ${pathLen} intermediate(s) below it, found ${below}`);
    }
  }
  return undefined;
}

function allows(eku: string[], purpose: Purpose): boolean {
  return eku.includes(OID[purpose]) || eku.includes(OID.anyExtendedKeyUsage);
}

function checkLeaf(leaf: ParsedCert, opts: VerifyOptions): Verdict<never> | undefined {
  if (leaf.basicConstraints?.ca)
    return refuse('E_CERT_WRONG_TYPE', 'a CA certificate cannot be used as a peer certificate');
  if (leaf.keyUsage && !leaf.keyUsage.has('digitalSignature'))
    return refuse('E_CERT_USAGE', 'leaf lacks digitalSignature');
  // An end-entity cert must say what it is for: no EKU is refused rather than read as "anything".
  if (!leaf.extKeyUsage?.includes(OID[opts.purpose])) {
    return refuse('E_CERT_USAGE', `leaf is not a ${opts.purpose} certificate`);
  }
  if (opts.expectedUri !== undefined) {
    const uris = leaf.san.uris;
    if (uris.length !== 1 || uris[0] !== opts.expectedUri) {
      return refuse('E_CERT_IDENTITY', `expected ${opts.expectedUri}, certificate names ${JSON.stringify(uris)}`);
    }
  }
  if (opts.expectedHost !== undefined && !hostMatches(leaf, opts.expectedHost)) {
    return refuse('E_CERT_IDENTITY', `certificate does not name host ${opts.expectedHost}`);
  }
  return undefined;
}

function hostMatches(leaf: ParsedCert, host: string): boolean {
  const ip = ipBytes(host);
  if (ip) return leaf.san.ips.some((x) => ipBytes(x)?.equals(ip));
  const h = host.toLowerCase().replace(/\.$/, '');
  return leaf.san.dns.some((d) => d.toLowerCase() === h);
}

function checkRevocation(full: ParsedCert[], isRevoked: VerifyOptions['isRevoked']): Verdict<never> | undefined {
  if (!isRevoked) return undefined;
  for (let k = 0; k < full.length - 1; k++) {
    const issuer = full[k + 1]!;
    const ref: IssuerRef = { fingerprint256: issuer.fingerprint256 };
    if (issuer.subjectKeyId) ref.subjectKeyId = issuer.subjectKeyId.toString('hex');
    if (isRevoked(full[k]!.serialHex, ref)) {
      return refuse(
        'E_CERT_REVOKED',
        `serial ${full[k]!.serialHex} of ${full[k]!.subjectCn ?? 'certificate'} is revoked`,
      );
    }
  }
  return undefined;
}

function finish(leaf: ParsedCert, full: ParsedCert[], opts: VerifyOptions): Verdict<VerifiedPeer> {
  const peer: VerifiedPeer = {
    serialHex: leaf.serialHex,
    // Copies: the parsed leaf may be the path cache's, shared with every later call.
    uris: [...leaf.san.uris],
    dns: [...leaf.san.dns],
    ips: [...leaf.san.ips],
    notBefore: new Date(leaf.notBefore.getTime()),
    notAfter: new Date(leaf.notAfter.getTime()),
    issuerFingerprint: full[1]!.fingerprint256,
    anchorFingerprint: full[full.length - 1]!.fingerprint256,
    fingerprint256: leaf.fingerprint256,
    pathLength: full.length,
  };
  if (leaf.subjectCn !== undefined) peer.subjectCn = leaf.subjectCn;

  const grantExt = leaf.extensions.get(GRANT_EXTENSION_OID);
  if (grantExt) {
    const grant = decodeGrant(grantExt.value);
    if (!grant.ok) return grant;
    // The grant speaks for the cert's subject only.
    if (leaf.san.uris.length !== 1 || leaf.san.uris[0] !== grant.value.actor) {
      return refuse('E_CERT_IDENTITY', 'grant actor is not the certificate subject');
    }
    peer.grant = grant.value;
  }
  // What the grant allows is checkGrant's decision, made by its holder against the request (gateway admission).
  if (opts.requireGrant && !peer.grant) return refuse('E_GRANT_MISSING', 'no access grant');

  const routeExt = leaf.extensions.get(ROUTE_EXTENSION_OID);
  if (routeExt) {
    const route = decodeRoute(routeExt.value);
    if (!route.ok) return route;
    peer.route = route.value;
  }
  if (opts.requireRoute && !peer.route) return refuse('E_CERT_WRONG_TYPE', 'certificate carries no gateway route');
  return { ok: true, value: peer };
}
